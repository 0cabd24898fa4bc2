namespace QwenSharp.Server.Api;

/// <summary>
/// A request the server answers with an OpenAI-shaped error object:
/// <c>{"error": {"message", "type", "param", "code"}}</c> and the HTTP status.
/// </summary>
internal sealed class ApiException : Exception
{
    public ApiException(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
        : base(message)
    {
        Status = status;
        Param = param;
        Code = code;
        Type = type;
    }

    public ApiException()
        : this(400, "bad request")
    {
    }

    public ApiException(string message)
        : this(400, message)
    {
    }

    public ApiException(string message, Exception innerException)
        : base(message, innerException)
    {
        Status = 400;
        Type = "invalid_request_error";
    }

    public int Status { get; }

    public string? Param { get; }

    public string? Code { get; }

    public string Type { get; }

    /// <summary>400: a field is missing, of the wrong type or out of range.</summary>
    public static ApiException BadField(string param, string message) => new(400, message, param, "invalid_value");
}
