import Foundation

/// A `LinearizableStore` on an etcd 3.4 cluster, reached through etcd's v3
/// JSON gateway over HTTP/1.1 with the package's own `HTTPClient`.
///
/// Reads are linearizable ranges (etcd's default) and writes go through
/// raft, so the store keeps the protocol's contract as far as etcd does. Keys,
/// values and TTLs are checked with `LinearizableStoreLimits` before anything
/// is sent, so this store rejects the same requests as the embedded store,
/// with the same codes.
///
/// Members: a request goes to one member at a time, starting with the member
/// that served the last request. When a connection cannot be opened, the
/// request moves on to the next member, because nothing was sent. A read also
/// moves on after a timeout, a dropped connection or a member that reports
/// itself unavailable (such as "no leader"). A write does not, because the
/// member may have applied it: it fails with `unavailable`, and the next
/// request starts at the next member. An attempt waits at most
/// `requestTimeout` for the connection and as long again for the response.
///
/// Differences from the embedded store, as seen with etcd 3.4.23:
/// - Lease TTLs are whole seconds. A requested TTL is rounded up, and etcd
///   raises a TTL below its minimum (2 s with the default heartbeat and
///   election timeout).
/// - `leaseTimeToLive` reports the remaining TTL in whole seconds rounded
///   down, so it is zero during a lease's last second.
/// - etcd deletes an expired lease's keys when its periodic expiry check
///   runs, so they stay readable for a short while after the TTL (up to
///   about 0.5 s in a few runs on loopback).
/// - etcd limits a whole request to its `--max-request-bytes` (1.5 MiB by
///   default). A request over that limit fails with `valueTooLarge`.
/// - Lease ids are random non-zero 64-bit numbers.
///
/// There is no TLS and no authentication, so use client URLs on loopback or a
/// private network. The store does not keep leases alive by itself.
public final class EtcdLinearizableStore: LinearizableStore {
    /// The client address of one etcd member, as in its `--advertise-client-urls`.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// An IPv4 address, or `localhost` for 127.0.0.1. `HTTPClient` resolves no other host names.
        public var host: String
        public var port: UInt16

        public init(host: String, port: UInt16) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public struct Configuration: Sendable, Equatable {
        /// The members that requests go to, each tried in turn after the one that served the last request.
        public var endpoints: [Endpoint]
        /// The longest one attempt at one member may take, from sending the
        /// request to the last byte of the response. A write that times out
        /// may still be applied by etcd afterwards.
        public var requestTimeout: Duration = .seconds(5)
        /// The number of requests in flight at once. More wait their turn.
        /// Each runs on one thread of the store's `HTTPClient`, started on
        /// demand. With sessions behind consensus every session operation is
        /// one of these requests, so a low bound would queue them.
        public var maximumConcurrentRequests = 128

        public init(endpoints: [Endpoint]) {
            self.endpoints = endpoints
        }

        public func validate() throws(ConfigurationError) {
            guard !endpoints.isEmpty else {
                throw ConfigurationError(field: "etcd.endpoints", detail: "name at least one etcd client address, such as 127.0.0.1:2379")
            }
            for (index, endpoint) in endpoints.enumerated() {
                var address = in_addr()
                guard endpoint.host == "localhost" || inet_pton(AF_INET, endpoint.host, &address) == 1 else {
                    throw ConfigurationError(
                        field: "etcd.endpoints[\(index)].host",
                        detail: "\"\(endpoint.host)\" is not an IPv4 address or localhost, and no other host names are resolved")
                }
                guard endpoint.port != 0 else {
                    throw ConfigurationError(field: "etcd.endpoints[\(index)].port", detail: "the port must be between 1 and 65535")
                }
            }
            // A socket timeout of zero would mean no timeout at all.
            guard requestTimeout >= .milliseconds(1) else {
                throw ConfigurationError(field: "etcd.requestTimeout", detail: "the timeout \(requestTimeout) must be at least 1 ms")
            }
            guard maximumConcurrentRequests >= 1 else {
                throw ConfigurationError(
                    field: "etcd.maximumConcurrentRequests", detail: "\(maximumConcurrentRequests) must be at least 1")
            }
        }
    }

    public let configuration: Configuration
    private let gateway: EtcdGatewayClient

    /// Creates a store for the etcd members in `configuration`. It connects
    /// lazily, so an unreachable cluster shows up as `unavailable` on the
    /// first call. `logger`, when given, receives each failed attempt that
    /// the store moved past to another member.
    public init(configuration: Configuration, logger: Logger? = nil) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.gateway = EtcdGatewayClient(configuration: configuration, logger: logger)
    }

    // MARK: Keys

    public func currentRevision() async throws(LinearizableStoreError) -> Int64 {
        // Any linearizable read returns the revision in its header. Counting
        // keys equal to "\0" keeps the response small.
        let body: JSONValue = .object(["key": EtcdGatewayJSON.bytes([0]), "count_only": .bool(true)])
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/kv/range", body: body, summary: "read of the current revision", isRetryable: true))
        return try response.decode(for: "read of the current revision") { response throws(EtcdResponseError) in
            try EtcdGatewayJSON.revision(of: response)
        }
    }

    public func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? {
        try LinearizableStoreLimits.validateKey(key)

        let summary = "get of key \(quotedKey(key))"
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/kv/range", body: EtcdGatewayJSON.rangeRequest(key: key), summary: summary, isRetryable: true))
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            // Every etcd response has a header, so one without is damaged.
            _ = try EtcdGatewayJSON.revision(of: response)
            let keyValue = try EtcdGatewayJSON.singleKeyValue(of: response)
            if let keyValue, keyValue.key != key {
                throw EtcdResponseError("it returned key \(quotedKey(keyValue.key)) instead of the key requested")
            }
            return keyValue
        }
    }

    public func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] {
        try LinearizableStoreLimits.validatePrefix(prefix)

        // NOTE: the whole range arrives in one response, and `HTTPClient`
        // accepts at most 64 MiB of body, so a larger range fails with
        // `unexpectedResponse`. There is no paging.
        let summary = "range of prefix \(quotedKey(prefix))"
        let response = try await gateway.perform(
            EtcdGatewayCall(
                path: "/v3/kv/range", body: EtcdGatewayJSON.prefixRangeRequest(prefix: prefix), summary: summary, isRetryable: true))
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            _ = try EtcdGatewayJSON.revision(of: response)
            return try EtcdGatewayJSON.keyValues(of: response)
        }
    }

    /// Writes the key. A put that names lease 0 fails with `leaseNotFound`
    /// without a request, because etcd would read 0 as "no lease".
    public func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        try LinearizableStoreLimits.validateKey(key)
        try LinearizableStoreLimits.validateValue(value, key: key)
        try Self.rejectLeaseZero([.put(key, value: value, lease: lease)])

        let summary = "put of key \(quotedKey(key))"
        let call = EtcdGatewayCall(
            path: "/v3/kv/put", body: EtcdGatewayJSON.putRequest(key: key, value: value, lease: lease), summary: summary,
            isRetryable: false, leases: lease.map { [$0] } ?? [])
        let response = try await gateway.perform(call)
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            try EtcdGatewayJSON.revision(of: response)
        }
    }

    public func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult {
        try LinearizableStoreLimits.validateKey(key)

        let summary = "delete of key \(quotedKey(key))"
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/kv/deleterange", body: EtcdGatewayJSON.deleteRequest(key: key), summary: summary, isRetryable: false)
        )
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            DeleteResult(
                previous: try EtcdGatewayJSON.singleKeyValue(of: response, field: "prev_kvs"),
                revision: try EtcdGatewayJSON.revision(of: response))
        }
    }

    /// Runs the transaction. A put that names lease 0 fails with
    /// `leaseNotFound` before anything is sent, even in the branch that would
    /// not run, because etcd would read 0 as "no lease".
    public func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        try LinearizableStoreLimits.validateTransaction(compares: compares, success: success, failure: failure)
        try Self.rejectLeaseZero(success + failure)

        var leases: [LeaseID] = []
        for case .put(_, _, let lease?) in success + failure where !leases.contains(lease) {
            leases.append(lease)
        }

        let summary = "transaction of \(compares.count) compares, \(success.count) success and \(failure.count) failure operations"
        let body = EtcdGatewayJSON.transactionRequest(compares: compares, success: success, failure: failure)
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/kv/txn", body: body, summary: summary, isRetryable: false, leases: leases))
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            let revision = try EtcdGatewayJSON.revision(of: response)
            let succeeded = try response.bool("succeeded")
            let results = try EtcdGatewayJSON.operationResults(of: response, branch: succeeded ? success : failure, revision: revision)
            return TransactionResult(succeeded: succeeded, revision: revision, results: results)
        }
    }

    // MARK: Leases

    /// Grants a lease of `ttl` rounded up to whole seconds. etcd may grant
    /// more: see the type's notes.
    public func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease {
        try LinearizableStoreLimits.validateTTL(ttl)
        let (wholeSeconds, attoseconds) = ttl.components
        let seconds = attoseconds > 0 ? wholeSeconds + 1 : wholeSeconds

        // ID 0 lets etcd choose the id.
        let summary = "grant of a lease with TTL \(seconds) s"
        let body: JSONValue = .object(["TTL": EtcdGatewayJSON.number(seconds), "ID": EtcdGatewayJSON.number(0)])
        let response = try await gateway.perform(EtcdGatewayCall(path: "/v3/lease/grant", body: body, summary: summary, isRetryable: false))
        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            if let refusal = response.fields["error"]?.stringValue, !refusal.isEmpty {
                throw EtcdResponseError("etcd did not grant the lease: \(refusal)")
            }
            let id = try response.int64("ID")
            let granted = try response.int64("TTL")
            guard id != 0 else {
                throw EtcdResponseError("ID is missing or 0, which names no lease")
            }
            guard granted >= seconds else {
                throw EtcdResponseError("TTL is \(granted) s, shorter than the \(seconds) s requested")
            }
            return Lease(id: LeaseID(rawValue: id), ttl: .seconds(granted))
        }
    }

    /// Sends one keep-alive through the gateway's streaming endpoint, which
    /// closes the stream after its one response.
    public func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration {
        let summary = "keep-alive of lease \(id)"
        let body: JSONValue = .object(["ID": EtcdGatewayJSON.number(id.rawValue)])
        // Renewing twice has the effect of renewing once, so a keep-alive may
        // go to another member after a timeout.
        let call = EtcdGatewayCall(path: "/v3/lease/keepalive", body: body, summary: summary, isRetryable: true, leases: [id])
        let response = try await gateway.perform(call)

        // A stream reports an error inside its body, after status 200.
        if let failure = response.object.fields["error"] {
            guard let error = EtcdGatewayJSON.gatewayError(in: .object(["error": failure])) else {
                throw EtcdGatewayClient.invalidResponse(
                    from: response.endpoint, summary: summary, reason: "the stream failed with \(failure.serializedString())", cause: nil)
            }
            throw EtcdGatewayClient.rejection(
                code: error.code, message: error.message, status: 200, call: call, endpoint: response.endpoint)
        }

        let ttl = try response.decode(for: summary) { response throws(EtcdResponseError) in
            let result = try response.requiredObject("result")
            let returnedID = try result.int64("ID")
            guard returnedID == id.rawValue else {
                throw EtcdResponseError("result.ID is \(returnedID), but the keep-alive was for lease \(id)")
            }
            return try result.int64("TTL")
        }

        // etcd returns TTL 0 for a keep-alive of a missing lease, not an error.
        guard ttl > 0 else { throw EtcdGatewayClient.leaseNotFound([id]) }
        return .seconds(ttl)
    }

    public func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) {
        let summary = "revoke of lease \(id)"
        let body: JSONValue = .object(["ID": EtcdGatewayJSON.number(id.rawValue)])
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/lease/revoke", body: body, summary: summary, isRetryable: false, leases: [id]))
        _ = try response.decode(for: summary) { response throws(EtcdResponseError) in
            try EtcdGatewayJSON.revision(of: response)
        }
    }

    public func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus {
        let summary = "time-to-live of lease \(id)"
        let body: JSONValue = .object(["ID": EtcdGatewayJSON.number(id.rawValue), "keys": .bool(true)])
        let response = try await gateway.perform(
            EtcdGatewayCall(path: "/v3/lease/timetolive", body: body, summary: summary, isRetryable: true, leases: [id]))

        // etcd returns TTL -1 for a missing lease, not an error.
        let remaining = try response.decode(for: summary) { response throws(EtcdResponseError) in try response.int64("TTL") }
        guard remaining != -1 else { throw EtcdGatewayClient.leaseNotFound([id]) }

        return try response.decode(for: summary) { response throws(EtcdResponseError) in
            let granted = try response.int64("grantedTTL")
            guard remaining >= 0, granted >= 1 else {
                throw EtcdResponseError("TTL \(remaining) and grantedTTL \(granted) are not a live lease's TTLs in seconds")
            }
            return LeaseStatus(
                id: id, grantedTTL: .seconds(granted), remainingTTL: .seconds(remaining), keys: try EtcdGatewayJSON.leaseKeys(of: response))
        }
    }

    private static func rejectLeaseZero(_ operations: [TransactionOperation]) throws(LinearizableStoreError) {
        for case .put(_, _, let lease?) in operations where lease.rawValue == 0 {
            throw EtcdGatewayClient.leaseNotFound([lease])
        }
    }
}
