namespace QwenSharp.Tokenization.Chat;

/// <summary>
/// A chat template that cannot be rendered: a construct our Jinja subset does not have, a syntax
/// error, an error raised by the template itself (<c>raise_exception</c>), or messages it rejects.
/// The message names the template line.
/// </summary>
public sealed class TemplateException : Exception
{
    public TemplateException(string message)
        : base(message)
    {
    }

    public TemplateException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public TemplateException()
    {
    }
}
