using System.Reflection;
using QwenSharp.Tests.Support;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: Xunit.TestFramework("QwenSharp.Tests.Support.RunFolderTestFramework", "QwenSharp.Tests")]

namespace QwenSharp.Tests.Support;

/// <summary>
/// xunit's own framework, which also removes this run's temporary folder (<see cref="Fixtures.TempDirectory"/>) once every
/// test has finished. A handler on process exit is not enough: the test host is stopped before it can delete a run's
/// gigabyte of model files, and runs left behind filled /tmp until a CI run could not write its first file.
/// </summary>
public sealed class RunFolderTestFramework(IMessageSink diagnosticMessageSink) : XunitTestFramework(diagnosticMessageSink)
{
    protected override ITestFrameworkExecutor CreateExecutor(AssemblyName assemblyName) =>
        new Executor(assemblyName, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Executor(AssemblyName assemblyName, ISourceInformationProvider sourceInformationProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkExecutor(assemblyName, sourceInformationProvider, diagnosticMessageSink)
    {
        protected override async void RunTestCases(IEnumerable<IXunitTestCase> testCases, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        {
            using var runner = new AssemblyRunner(TestAssembly, testCases, DiagnosticMessageSink, executionMessageSink, executionOptions);
            await runner.RunAsync();
        }
    }

    private sealed class AssemblyRunner(ITestAssembly testAssembly, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        : XunitTestAssemblyRunner(testAssembly, testCases, diagnosticMessageSink, executionMessageSink, executionOptions)
    {
        protected override Task BeforeTestAssemblyFinishedAsync()
        {
            Fixtures.RemoveRunDirectory();
            return base.BeforeTestAssemblyFinishedAsync();
        }
    }
}
