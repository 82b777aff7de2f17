// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Homeport",
    products: [
        .library(name: "Homeport", targets: ["Homeport"]),
        .executable(name: "homeport", targets: ["homeport"]),
    ],
    targets: [
        // libmicrohttpd (Debian: libmicrohttpd-dev). The shim header wraps the
        // variadic MHD_start_daemon, which Swift cannot call.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        // OpenSSL libcrypto (Debian: libssl-dev) for HMAC-SHA256 and RAND_bytes.
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "Homeport",
            dependencies: ["CMicroHTTPD", "CCrypto"]
        ),
        .executableTarget(
            name: "homeport",
            dependencies: ["Homeport"]
        ),
        .testTarget(
            name: "HomeportTests",
            dependencies: ["Homeport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
