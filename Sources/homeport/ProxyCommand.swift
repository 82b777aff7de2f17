import Foundation
import Homeport

/// `homeport proxy`: a TCP proxy that delays each direction by a fixed
/// one-way delay, until SIGINT or SIGTERM.
enum ProxyCommand {
    static let usage = """
        usage: homeport proxy --target HOST:PORT --delay-ms N [--listen HOST:PORT]

        Accepts TCP connections and relays them to the target, delaying every byte
        by N milliseconds in each direction, in order and without holding later
        bytes behind earlier ones. A cluster on one machine puts it between etcd
        members, whose kernel has no netem to delay their traffic.

        options:
          --target HOST:PORT   where to relay connections (required)
          --delay-ms N         one-way delay in milliseconds (required, 0 to 60000)
          --listen HOST:PORT   where to listen (default 127.0.0.1:0, an ephemeral port,
                               printed on start)
        """

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(arguments, valued: ["target", "delay-ms", "listen"], switches: ["help"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()

            guard let target = options.string("target").flatMap(address) else {
                throw CommandLineOptions.UsageError(description: "--target HOST:PORT is required, such as 127.0.0.1:2380")
            }
            guard let delay = try options.integer("delay-ms", in: 0...60_000) else {
                throw CommandLineOptions.UsageError(description: "--delay-ms N is required")
            }
            var configuration = DelayProxy.Configuration(targetPort: target.port, oneWayDelay: .milliseconds(delay))
            configuration.targetHost = target.host
            if let text = options.string("listen") {
                guard let listen = address(text) else {
                    throw CommandLineOptions.UsageError(description: "--listen \(text) is not HOST:PORT, such as 127.0.0.1:12380")
                }
                configuration.listenHost = listen.host
                configuration.listenPort = listen.port
            }

            let proxy = DelayProxy(configuration: configuration)
            let port = try proxy.start()
            print(
                "delay proxy listening on \(configuration.listenHost):\(port), relaying to \(target.host):\(target.port) with \(delay) ms each way"
            )
            _ = await ShutdownSignal.wait()
            proxy.stop()
            return 0
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport proxy: \(error)\nRun `homeport proxy --help` for the options.")
            return 2
        } catch {
            printError("homeport proxy: \(error)")
            return 1
        }
    }

    private static func address(_ text: String) -> (host: String, port: UInt16)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = UInt16(parts[1]) else { return nil }
        return (String(parts[0]), port)
    }
}
