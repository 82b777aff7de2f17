import Foundation

/// The HMAC keys that sign and verify routing tokens.
///
/// Rotation: every key in the ring verifies, only `signingKeyID` signs. To
/// rotate, add the new key to every node, then make it the signing key, then
/// drop the old one once the tokens it signed have expired.
///
/// Wire format: `hp1.<keyID>.<claims>.<signature>`, where `claims` is the
/// base64url of a compact JSON object and `signature` the base64url
/// HMAC-SHA256 of everything before the last dot.
public struct TokenKeyRing: Sendable {
    public static let minimumKeyBytes = 32
    static let formatPrefix = "hp1"

    private let keys: [String: [UInt8]]
    public let signingKeyID: String

    public var keyIDs: [String] { keys.keys.sorted() }

    /// - Throws: `ConfigurationError` naming the key id when an id is invalid, a
    ///   key is shorter than 32 bytes, or the signing key is not in `keys`.
    public init(keys: [String: [UInt8]], signingKeyID: String) throws(ConfigurationError) {
        for (keyID, key) in keys {
            guard SessionID.isValid(keyID), keyID.utf8.count <= 32 else {
                throw ConfigurationError(
                    field: "keys.\(keyID)", detail: "a key id must be 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'")
            }
            guard key.count >= Self.minimumKeyBytes else {
                throw ConfigurationError(
                    field: "keys.\(keyID)",
                    detail: "the key is \(key.count) bytes; HMAC-SHA256 keys must be at least \(Self.minimumKeyBytes) bytes")
            }
        }
        guard keys[signingKeyID] != nil else {
            throw ConfigurationError(
                field: "signingKeyID", detail: "signing key \"\(signingKeyID)\" is not among the keys \(keys.keys.sorted())")
        }
        self.keys = keys
        self.signingKeyID = signingKeyID
    }

    /// A ring with one fresh 32-byte key from the CSPRNG, for a single-process run.
    public static func generated(keyID: String = "k1") throws -> TokenKeyRing {
        try TokenKeyRing(keys: [keyID: try SecureRandom.bytes(count: 32)], signingKeyID: keyID)
    }

    /// Loads `{"signingKeyID": "k2", "keys": {"k1": "<base64url>", "k2": "<base64url>"}}`.
    public static func load(path: String) throws(ConfigurationError) -> TokenKeyRing {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(field: "keys file", detail: "cannot read \(path)")
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(Array(data))
        } catch {
            throw ConfigurationError(field: "keys file", detail: "\(path) is not valid JSON: \(error)")
        }
        guard let signingKeyID = root["signingKeyID"]?.stringValue else {
            throw ConfigurationError(field: "signingKeyID", detail: "\(path) must have a string field \"signingKeyID\"")
        }
        guard case .object(let encodedKeys)? = root["keys"] else {
            throw ConfigurationError(field: "keys", detail: "\(path) must have an object \"keys\" of key id to base64url key")
        }
        var keys: [String: [UInt8]] = [:]
        for (keyID, encoded) in encodedKeys {
            guard let text = encoded.stringValue, let key = Base64URL.decode(text[...]) else {
                throw ConfigurationError(field: "keys.\(keyID)", detail: "the key must be a base64url string")
            }
            keys[keyID] = key
        }
        return try TokenKeyRing(keys: keys, signingKeyID: signingKeyID)
    }

    /// Returns the HMAC-SHA256 of `message` under key `keyID`, or nil when the ring lacks that key.
    func authenticate(_ message: [UInt8], keyID: String) -> [UInt8]? {
        keys[keyID].map { HMACSHA256.authenticate(message, key: $0) }
    }

    /// Signs `token` with the current signing key.
    public func sign(_ token: RoutingToken) -> String {
        let claims: JSONValue = .object([
            "sid": .string(token.session.rawValue),
            "ten": .string(token.tenant.rawValue),
            "home": .string(token.home),
            "ep": .integer(Int64(clamping: token.epoch)),
            "iat": .integer(token.issuedAt),
            "exp": .integer(token.expiresAt),
        ])
        let signedPart = "\(Self.formatPrefix).\(signingKeyID).\(Base64URL.encode(claims.serializedBytes()))"
        let signature = HMACSHA256.authenticate(Array(signedPart.utf8), key: keys[signingKeyID]!)
        return signedPart + "." + Base64URL.encode(signature)
    }

    /// Checks the signature with the key the token names, then the expiry.
    ///
    /// The signature is checked before any claim is trusted, and compared in
    /// constant time. `nowSeconds` is seconds since the Unix epoch.
    public func verify(_ text: String, nowSeconds: Int64) throws(RoutingTokenError) -> RoutingToken {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == Self.formatPrefix else {
            throw RoutingTokenError(.malformed, "the routing token must have the form hp1.<keyID>.<claims>.<signature>")
        }

        let keyID = String(parts[1])
        guard let key = keys[keyID] else {
            throw RoutingTokenError(
                .unknownKey, "the routing token was signed with key \"\(keyID.prefix(32))\", which this node does not have")
        }

        guard Base64URL.isAlphabet(parts[3]) else {
            throw RoutingTokenError(.malformed, "the routing token's signature is not base64url")
        }
        // Base64url text that is cut short or has stray low bits decodes to no
        // valid signature, so it is a bad signature rather than a malformed token.
        guard let signature = Base64URL.decode(parts[3]) else {
            throw RoutingTokenError(.badSignature, "the routing token's signature is not canonical base64url")
        }
        let signedPart = text.utf8.prefix(text.utf8.count - parts[3].utf8.count - 1)
        let expected = HMACSHA256.authenticate(Array(signedPart), key: key)
        guard HMACSHA256.constantTimeEquals(signature, expected) else {
            throw RoutingTokenError(.badSignature, "the routing token's signature does not match its contents")
        }

        let token = try Self.decodeClaims(parts[2])
        guard nowSeconds < token.expiresAt else {
            throw RoutingTokenError(
                .expired, "the routing token expired at \(token.expiresAt) (Unix seconds); create a new session")
        }
        return token
    }

    private static func decodeClaims(_ encoded: Substring) throws(RoutingTokenError) -> RoutingToken {
        guard let bytes = Base64URL.decode(encoded), let claims = try? JSONValue.parse(bytes) else {
            throw RoutingTokenError(.malformed, "the routing token's claims are not base64url JSON")
        }
        guard let sessionText = claims["sid"]?.stringValue, let session = SessionID(sessionText),
            let tenantText = claims["ten"]?.stringValue, let tenant = TenantID(tenantText),
            let home = claims["home"]?.stringValue,
            let epoch = claims["ep"]?.integerValue, epoch >= 1,
            let issuedAt = claims["iat"]?.integerValue,
            let expiresAt = claims["exp"]?.integerValue
        else {
            throw RoutingTokenError(.malformed, "the routing token's claims are incomplete")
        }
        return RoutingToken(
            session: session, tenant: tenant, home: home, epoch: UInt64(epoch), issuedAt: issuedAt, expiresAt: expiresAt)
    }
}
