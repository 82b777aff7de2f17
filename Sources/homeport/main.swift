import Foundation
import Homeport

/// `homeport`: the command-line entry point. Parsing lives here; the work is
/// done by the library.
let usage = """
    usage: homeport <command> [options]

    commands:
      demo            run three regions in this process and replay the Mooncake trace through them
      serve           run one or more regions' nodes until interrupted
      policy check    validate a policy table and print the path each kind takes
      bench           compare the default design with every session behind consensus
      faults          run seeded fault-injection scenarios and check the failover invariants
      load            drive one node's session API with N connections and report ops/s
      proxy           relay TCP connections with a fixed one-way delay (for a local cluster)
      cluster         start, inspect, replay through and stop a three-region cluster of real processes
      help            print this text

    Run `homeport <command> --help` for a command's options.
    """

let arguments = Array(CommandLine.arguments.dropFirst())
let exitCode: Int32
switch arguments.first {
case "demo":
    exitCode = await DemoCommand.run(Array(arguments.dropFirst()))
case "serve":
    exitCode = await ServeCommand.run(Array(arguments.dropFirst()))
case "bench":
    exitCode = await BenchCommand.run(Array(arguments.dropFirst()))
case "faults":
    exitCode = await FaultsCommand.run(Array(arguments.dropFirst()))
case "load":
    exitCode = await LoadCommand.run(Array(arguments.dropFirst()))
case "proxy":
    exitCode = await ProxyCommand.run(Array(arguments.dropFirst()))
case "cluster":
    exitCode = await ClusterCommand.run(Array(arguments.dropFirst()))
case "policy":
    exitCode = PolicyCommand.run(Array(arguments.dropFirst()))
case "help", "--help", "-h":
    print(usage)
    exitCode = 0
case nil:
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exitCode = 2
case let other?:
    FileHandle.standardError.write(Data("homeport: unknown command \"\(other)\"\n\n\(usage)\n".utf8))
    exitCode = 2
}
exit(exitCode)
