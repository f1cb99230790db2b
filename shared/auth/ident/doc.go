// Package ident is Airlock's identity store: users with bcrypt-hashed
// passwords and roles, API tokens, and login checks with brute-force locks.
// Everything lives as markers of the registry's Metadata store
// (storage.ProxyMetadata: DynamoDB in production, memstore in tests), so
// it costs nothing while idle and needs no table of its own.
//
//	users := ident.New(meta, ident.Options{})
//	created, err := users.Bootstrap(ctx, "admin", initialPassword)
//	u, err := users.Authenticate(ctx, name, passwordOrToken)
//
// # Item layout
//
// Marker groups (pk MARK#<group>, sk <key>) and their Values (JSON):
//
//	authusers             <name>  {"v":1,"uid":<hex>,"hash":<bcrypt>,"roles":[…],"created":<ms>}
//	                              Until: 2200-01-01T00:00:00Z (users never expire,
//	                              but markers must have an Until)
//	authtokens            <id>    {"v":1,"user":…,"uid":…,"name":…,"sha256":<hex>,"created":<ms>,"expires":<ms>}
//	                              Until: the token's expiry
//	authutok:<name>       <id>    {"v":1,"uid":…,"name":…,"created":<ms>,"expires":<ms>} (no hash)
//	                              Until: the token's expiry
//	authlogin:<name>      slot/NN Value: a random attempt id; Count 0: an attempt in
//	                              flight (Until now+30s), 1: a failed one (Until now+Window)
//	                      lock    Value: the lock's end (ms); Count: the lock's level
//	                              (1, 2, …: doubling); Until: the lock's end + Window
//	authlease             <name>  Value: a random owner: the user's change lease (Until now+30s)
//
// A user's uid is random and new with every CreateUser; tokens record it,
// so a token that outlived a deleted user never works for a new user of
// the same name. A token has two items: authtokens/<id>, the one that
// counts (Authenticate and TokenActive read only it, one GetMarker, then
// the user's item), and its listing item under the user (ListTokens, one
// ListMarkers). The listing item is written first and deleted last, so a
// crash leaves at worst a listed token that does not work, never a working
// one that is not listed.
//
// # Writes and races
//
// CreateUser is one AcquireMarker whose Value is unique (random uid and
// salt): it succeeds only where no user is, so of concurrent creators of
// a name exactly one wins (the others get ErrExists). Bootstrap reads
// first and creates only when absent; it never overwrites. SetPassword,
// SetRoles, DeleteUser and CreateToken read and rewrite a user, holding
// the user's change lease (authlease, AcquireMarker on a random owner,
// released after; a crashed holder's lapses after 30 s), so none undoes
// another: a password change racing a delete never brings the user back.
//
// # Passwords
//
// bcrypt (golang.org/x/crypto/bcrypt), cost Options.BcryptCost (10).
// CheckPassword's rules: at least 12 characters, at most 72 bytes
// (bcrypt's limit: longer ones are refused, not truncated; at login too),
// valid UTF-8, not the user name, and not starting with "alk_", which
// tells API tokens from passwords without any read. User names match
// [a-z0-9][a-z0-9._-]{0,63}.
//
// # API tokens
//
// A secret is "alk_" + id + "_" + random: id 10 bytes (16 characters),
// random 32 bytes of crypto/rand (52 characters), both lower-case base32
// without padding — 73 characters, always. It is returned once by
// CreateToken; only its SHA-256 is stored, compared with
// subtle.ConstantTimeCompare. Authenticate parses strictly (length,
// prefix, separator, canonical base32) and refuses anything else with
// ErrBadCredentials before any read. A token works only for its own user
// (the name given with it), until it expires (Until: the store stops
// returning it; the Store checks the expiry too), is revoked, or its user
// is deleted (DeleteUser revokes them).
//
// # Logins
//
// Authenticate returns ErrBadCredentials, the same error value, for every
// refusal: unknown user, wrong password, bad token. An unknown (or
// impossible) name still costs one bcrypt comparison, against a dummy hash
// of the configured cost made on first use (whoever that is), and goes
// through the same store calls, so timing does not tell which names exist.
//
// Failed password logins are counted per name in "slots": an attempt
// takes a free slot/NN (AcquireMarker) before bcrypt runs, a failure
// keeps it for Window, a success frees it and clears the failed ones and
// the lock level. There are MaxFailures slots, so at most MaxFailures
// guesses per name are checked per window however many requests race
// (in-flight attempts hold slots too; an attempt finding all of them in
// flight waits up to 3 s). When all slots hold failures the name is
// locked: a lock marker, its failed slots freed; until the lock ends every
// password login of the name, right or wrong, gets *LockedError with
// RetryAfter, without bcrypt. The lock lasts Lock (1m), and twice as long
// as the last one when that ended less than Window ago (2m, 4m, …, up to
// MaxLock, 15m). Unknown names are counted and locked alike (locking
// must not tell which names exist); other names are never affected.
// SetPassword clears the name's failures and lock. API tokens are not
// counted nor locked: 256 random bits cannot be guessed, and a lock would
// let anyone who knows a user name stop its automation.
//
// # Secrets
//
// Nothing secret is ever returned, logged (the package logs nothing) or
// put into an error: User and Token have no hash nor secret; errors name
// users and token ids, never a password, a token secret or a hash. The
// stores quote a conditional write's Value (and the stored one) in their
// errors, so errors of writes whose Value holds a hash are sealed: the
// message keeps only the kind (condition failed, an AWS error code, …),
// errors.Is still sees storage.ErrConflict or context errors through it.
//
// Options.Now should be the store's clock: the store decides which markers
// are live, the Store computes their Until.
package ident
