import Foundation
import Testing
@testable import Homeport

@Suite struct RoutingTokenTests {
    static let now: Int64 = 1_800_000_000
    static let session = SessionID("s1-abcdefghijklmnop")!
    static let tenant = TenantID("acme")!

    static func ring(_ keys: [String: UInt8], signing: String) throws -> TokenKeyRing {
        try TokenKeyRing(keys: keys.mapValues { [UInt8](repeating: $0, count: 32) }, signingKeyID: signing)
    }

    static func token(home: String = "us-east", epoch: UInt64 = 1, expiresAt: Int64 = now + 3600) -> RoutingToken {
        RoutingToken(session: session, tenant: tenant, home: home, epoch: epoch, issuedAt: now, expiresAt: expiresAt)
    }

    @Test func signedTokenVerifies() throws {
        let ring = try Self.ring(["k1": 1], signing: "k1")
        let text = ring.sign(Self.token())
        #expect(text.hasPrefix("hp1.k1."))
        #expect(try ring.verify(text, nowSeconds: Self.now) == Self.token())
    }

    @Test func rotationVerifiesOldAndSignsWithNew() throws {
        let old = try Self.ring(["k1": 1], signing: "k1")
        let rotated = try Self.ring(["k1": 1, "k2": 2], signing: "k2")
        let oldToken = old.sign(Self.token())
        let newToken = rotated.sign(Self.token())

        #expect(newToken.hasPrefix("hp1.k2."))
        #expect(try rotated.verify(oldToken, nowSeconds: Self.now) == Self.token())
        #expect(try rotated.verify(newToken, nowSeconds: Self.now) == Self.token())
        let error = #expect(throws: RoutingTokenError.self) { try old.verify(newToken, nowSeconds: Self.now) }
        #expect(error?.code == .unknownKey)
    }

    @Test func wrongKeyIsRejected() throws {
        let signer = try Self.ring(["k1": 1], signing: "k1")
        let verifier = try Self.ring(["k1": 9], signing: "k1")
        let error = #expect(throws: RoutingTokenError.self) {
            try verifier.verify(signer.sign(Self.token()), nowSeconds: Self.now)
        }
        #expect(error?.code == .badSignature)
    }

    @Test func expiredTokenIsRejected() throws {
        let ring = try Self.ring(["k1": 1], signing: "k1")
        let text = ring.sign(Self.token(expiresAt: Self.now + 10))
        #expect(throws: Never.self) { try ring.verify(text, nowSeconds: Self.now + 9) }
        let error = #expect(throws: RoutingTokenError.self) { try ring.verify(text, nowSeconds: Self.now + 10) }
        #expect(error?.code == .expired)
    }

    /// Re-encodes the claims with one field changed and keeps the original signature.
    static func tamper(_ text: String, field: String, value: JSONValue) -> String {
        var parts = text.split(separator: ".").map(String.init)
        var claims = try! JSONValue.parse(Base64URL.decode(parts[2][...])!)
        if case .object(var fields) = claims {
            fields[field] = value
            claims = .object(fields)
        }
        parts[2] = Base64URL.encode(claims.serializedBytes())
        return parts.joined(separator: ".")
    }

    @Test(arguments: [
        ("sid", JSONValue.string("another-session")),
        ("ten", .string("globex")),
        ("home", .string("eu-west")),
        ("ep", .integer(2)),
        ("iat", .integer(now - 100)),
        ("exp", .integer(now + 999_999)),
    ])
    func tamperedFieldIsRejected(field: String, value: JSONValue) throws {
        let ring = try Self.ring(["k1": 1], signing: "k1")
        let tampered = Self.tamper(ring.sign(Self.token()), field: field, value: value)
        let error = #expect(throws: RoutingTokenError.self) { try ring.verify(tampered, nowSeconds: Self.now) }
        #expect(error?.code == .badSignature)
    }

    @Test func tamperedKeyIDIsRejected() throws {
        let ring = try Self.ring(["k1": 1, "k2": 2], signing: "k1")
        let text = ring.sign(Self.token()).replacingOccurrences(of: "hp1.k1.", with: "hp1.k2.")
        let error = #expect(throws: RoutingTokenError.self) { try ring.verify(text, nowSeconds: Self.now) }
        #expect(error?.code == .badSignature)
    }

    @Test func alteredSignatureIsRejected() throws {
        let ring = try Self.ring(["k1": 1], signing: "k1")
        var text = ring.sign(Self.token())
        let last = text.removeLast()
        text.append(last == "A" ? "B" : "A")
        let error = #expect(throws: RoutingTokenError.self) { try ring.verify(text, nowSeconds: Self.now) }
        #expect(error?.code == .badSignature)
    }

    @Test(arguments: ["", "garbage", "hp1.k1.abc", "hp2.k1.e30.AAAA", "hp1.k1.e30.not*base64", "hp1.k1.e30.AAAA.extra"])
    func malformedTokenIsRejected(text: String) throws {
        let ring = try Self.ring(["k1": 1], signing: "k1")
        let error = #expect(throws: RoutingTokenError.self) { try ring.verify(text, nowSeconds: Self.now) }
        #expect(error?.code == .malformed || error?.code == .unknownKey)
    }

    @Test func shortKeyIsRejectedAtConfiguration() {
        let error = #expect(throws: ConfigurationError.self) {
            try TokenKeyRing(keys: ["k1": [UInt8](repeating: 1, count: 16)], signingKeyID: "k1")
        }
        #expect(error?.field == "keys.k1")
    }

    @Test func missingSigningKeyIsRejectedAtConfiguration() {
        let error = #expect(throws: ConfigurationError.self) {
            try TokenKeyRing(keys: ["k1": [UInt8](repeating: 1, count: 32)], signingKeyID: "k2")
        }
        #expect(error?.field == "signingKeyID")
    }

    @Test func keysFileLoads() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString).json").path
        let key = Base64URL.encode([UInt8](repeating: 7, count: 32))
        try Data("{\"signingKeyID\": \"k2\", \"keys\": {\"k1\": \"\(key)\", \"k2\": \"\(key)\"}}".utf8).write(
            to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }

        let ring = try TokenKeyRing.load(path: path)
        #expect(ring.signingKeyID == "k2")
        #expect(ring.keyIDs == ["k1", "k2"])
    }
}

@Suite struct HMACSHA256Tests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func matchesRFC4231TestCase1() {
        let key = [UInt8](repeating: 0x0b, count: 20)
        let mac = HMACSHA256.authenticate(Array("Hi There".utf8), key: key)
        #expect(Self.hex(mac) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    @Test func matchesRFC4231TestCase2() {
        let mac = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(Self.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func constantTimeEqualsComparesContentAndLength() {
        #expect(HMACSHA256.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!HMACSHA256.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!HMACSHA256.constantTimeEquals([1, 2, 3], [1, 2]))
    }

    @Test func randomSessionIDsDiffer() throws {
        let ids = try (0..<1000).map { _ in try SessionID.random() }
        #expect(Set(ids).count == 1000)
        #expect(ids.allSatisfy { $0.rawValue.count == 22 })
    }
}
