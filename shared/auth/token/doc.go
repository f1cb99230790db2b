// Package token issues and verifies the bearer tokens of the Docker token
// authentication spec (distribution's docs/spec/auth/token.md, jwt.md and
// oauth.md): JWTs signed with ES256 (ECDSA P-256, SHA-256).
//
// # Tokens
//
// The header is {"alg":"ES256","kid":<kid>,"typ":"JWT"}; kid is the RFC 7638
// JWK thumbprint of the signing key's public key (43 base64url characters).
// The claims are iss (Options.Issuer), sub (the user; "" for anonymous),
// aud (the service the token was requested for), exp, nbf (= iat), iat,
// jti (16 random bytes), access and use:
//
//	{"iss":"airlock","sub":"alice","aud":"registry.example.com",
//	 "exp":1767225900,"nbf":1767225600,"iat":1767225600,"jti":"…",
//	 "access":[{"type":"repository","name":"team/app","actions":["pull","push"]}],
//	 "use":"access"}
//
// access lists exactly the granted actions per resource (the catalog is
// {"type":"registry","name":"catalog","actions":["*"]}); Claims.Allows
// matches type and name exactly, and an action listed or "*".
//
// Refresh tokens (offline_token=true, OAuth2 grant_type=refresh_token) are
// JWTs of the same keys with "use":"refresh", a subject, and no access
// claim, living Options.RefreshLifetime (30 days by default). Verify
// accepts only "use":"access" tokens with an access claim, VerifyRefresh
// only "use":"refresh" tokens without: neither is ever taken for the other.
//
// # Verification
//
// Verify pins the algorithm: ES256 only (the jwt library's
// WithValidMethods, and checks of the header of its own), so none, HS256 —
// also keyed with the bytes of the public key —, RS256 and others are
// refused; the key is looked up by kid among the Service's keys, never taken
// from the token (jwk, jku, x5c are ignored). It also refuses tokens over
// MaxTokenSize (8 KiB) before parsing, anything but three base64url
// segments (strictly decoded, no padding, no newlines), a header whose typ
// is not JWT or that has crit, a signature whose s is not in the low half
// (issued ones always are), a wrong iss or aud, a missing jti, iat, nbf or
// exp, expired or not yet valid tokens, tokens issued in the future, and
// tokens whose lifetime (exp − iat) exceeds the configured one. Clock skew
// of up to Leeway (3 s) is tolerated: Services are instances of one
// deployment with synchronised clocks. Every failure wraps ErrInvalid, with
// a short fixed reason that never includes the token.
//
// # Key storage
//
// Keys live in the registry's Metadata store, as markers
// (storage.ProxyMetadata) of group "authkeys", read whole by one
// ListMarkers:
//
//	gen/0000000001  Value: the kid of generation 1's key
//	key/<kid>       Value: {"v":1,"kid":…,"alg":"ES256","key":<PKCS #8, base64>,"created":…}
//
// A generation slot (gen/<n>) is taken with AcquireMarker, the one
// conditional write that decides races: of Services creating generation n at
// once, exactly one wins. Its key item is written before (PutMarker), so a
// slot never refers to a missing item; a loser deletes its item. (The
// private key is never the Value of a conditional write, whose errors quote
// the Value.) Markers must expire: a key's two markers get an Until 100
// years ahead, and the retirement time when the key retires.
//
// Keys cost nothing while idle: no key exists until the first NewService on
// a store creates generation 1 (a ListMarkers finding none, then a
// PutMarker and an AcquireMarker). Every NewService reads the keys once (the
// cold start); Verify then reads nothing, with one exception: a token
// whose kid is unknown but which would otherwise pass (issuer, audience,
// use, times) makes it read the keys again, at most once a minute per
// Service (keyRefresh). Issue reads them again when they are more than a
// minute old, so that a signer learns of a rotation.
//
// Rotate takes generation max+1 with a new key. The newest key whose
// activation has come signs; generation 1 is active from the start, a later
// one from its creation plus two minutes (activationDelay; never before its
// predecessor). Verification accepts it at once, so within those two minutes
// every Service either reads it (signers do, before signing, once their keys
// are a minute old) or is allowed to read it when the first token it signed
// arrives (the last read was more than a minute before): a key added by
// another instance never meets a Service that may not read it yet. A key
// retires, and is dropped, when its successor has been active for the
// longest token lifetime (access or refresh) plus the leeway plus a minute
// (for skew): by then every token it signed has expired. Rotate gives its
// markers that Until (best effort; Services compute retirement from the
// successor's creation time anyway), so the store's TTL removes them.
// Rotate also deletes leftovers of crashed writers: key items older than an
// hour that no slot refers to, and slots whose key item is gone.
//
// Alternatively Options.PEM provides the keys (the store is not used): the
// first private key signs, every key in it verifies.
//
// # Caveats
//
// Private keys are stored as they are in the Metadata store (DynamoDB):
// whoever reads the table can sign tokens. Use Options.PEM to keep them
// elsewhere. Rotation is not revocation: the old key keeps verifying until it
// retires. To revoke a key, delete its markers and restart the instances
// (a Service drops keys missing from the store when it next reads them; if
// none is left, the next Issue creates a new generation). A Service that
// cannot read the store for longer than a minute after a rotation keeps
// signing with the previous key; those tokens may be refused once it retires.
package token
