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
        // hiredis (Debian: libhiredis-dev) for the Redis session store. Linked
        // by name in the module map: its pkg-config file adds a define that
        // SwiftPM warns about on every build.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "Homeport",
            dependencies: ["CMicroHTTPD", "CCrypto", "CHiredis"]
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
