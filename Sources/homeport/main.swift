import Homeport
import Foundation

let logger = Logger(label: "homeport", sink: LogSink(minimumLevel: .debug))
let cluster = EmbeddedCluster(topology: .threeRegionDefault(), keyRing: try TokenKeyRing.generated(), logger: logger)
try cluster.start()
for node in cluster.nodes { print(node.region, node.port) }
try await Task.sleep(for: .seconds(600))
