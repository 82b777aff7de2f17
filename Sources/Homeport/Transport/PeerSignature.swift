/// Authenticates calls between regions' nodes (replication batches) with the
/// routing-token key ring: the sender signs the request body with its current
/// key, and the receiver accepts any key in its ring.
///
/// Header format: `Homeport-Peer-Signature: <keyID>.<base64url HMAC-SHA256 of the body>`.
/// It proves the body came from a holder of a shared key; it does not stop a
/// captured request from being replayed, which is harmless for replication
/// because applying a batch twice changes nothing.
public enum PeerSignature {
    public static let header = "Homeport-Peer-Signature"

    public static func sign(_ body: [UInt8], with keyRing: TokenKeyRing) -> String {
        keyRing.signingKeyID + "." + Base64URL.encode(keyRing.authenticate(body, keyID: keyRing.signingKeyID)!)
    }

    /// Returns true when `header` is a valid signature of `body` by a key in the ring.
    public static func verify(_ header: String?, body: [UInt8], with keyRing: TokenKeyRing) -> Bool {
        guard let header, let dot = header.firstIndex(of: ".") else { return false }
        let keyID = String(header[..<dot])
        guard let signature = Base64URL.decode(header[header.index(after: dot)...]),
            let expected = keyRing.authenticate(body, keyID: keyID)
        else { return false }
        return HMACSHA256.constantTimeEquals(signature, expected)
    }
}
