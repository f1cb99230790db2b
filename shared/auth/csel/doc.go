// Package csel compiles and evaluates content selectors: the subset of
// Nexus's CSEL language a privilege uses to say which content of its
// repositories it covers (a privilege = repositories + a content selector +
// actions).
//
// A selector is compiled once, when the configuration is loaded (Compile);
// a malformed one is rejected then with a *SyntaxError giving the position of
// the mistake. A compiled *Selector is immutable and safe for concurrent use;
// Match does not allocate.
//
// # Attributes
//
//   - path: the request path, e.g. "/v2/team-a/app/manifests/1.0",
//     "/v2/team-a/app/blobs/sha256:…", "/v2/team-a/app/blobs/uploads/<id>".
//   - format: the repository format, "docker" for everything Airlock serves.
//
// Any other name (e.g. Nexus's coordinate.groupId) is rejected at compile
// time with an error naming it and the allowed ones.
//
// # Operators
//
//   - a == "s": the attribute equals s.
//   - a != "s": the attribute does not equal s.
//   - a =~ "re": the whole attribute matches the regular expression re (a full
//     match: re is compiled as \A(?:re)\z, so "/v2/team-a/.*" does not match
//     "/x/v2/team-a/y", and "a|b" does not match "ab"). The syntax is Go's RE2
//     (package regexp): matching takes time linear in the input, with no
//     catastrophic backtracking; back-references and look-around are not
//     supported. An invalid regular expression is a SyntaxError at the
//     position of its string literal.
//   - a =^ "s": the attribute starts with s.
//   - x && y: both; x || y: either. && binds tighter than ||, both are left
//     associative, and parentheses group. There is no negation operator
//     ("!"); use != or a regular expression.
//
// Comparisons are byte-wise and case-sensitive (a regular expression may use
// (?i) to ignore case). The attribute is always on the left of its operator.
//
// # Strings
//
// A string literal is enclosed in double or single quotes. Inside it a
// backslash escapes exactly three characters: \" is ", \' is ' and \\ is \.
// Any other backslash sequence (\n, \., \d, \u0041, ...) is an error: the
// value of a literal is never guessed. A regular expression's own backslashes
// must therefore be doubled: path =~ "/v2/app\\.v1/.*" is the regular
// expression /v2/app\.v1/.* (an escaped dot). Any other character, a line
// break included, stands for itself.
//
// # Grammar
//
// In EBNF (as in the Go specification); tokens may be separated by white
// space (space, tab, CR, LF):
//
//	Selector   = Or .
//	Or         = And { "||" And } .
//	And        = Term { "&&" Term } .
//	Term       = Comparison | "(" Or ")" .
//	Comparison = Attribute Operator String .
//	Attribute  = "path" | "format" .
//	Operator   = "==" | "!=" | "=~" | "=^" .
//	String     = `"` { Char | Escape | "'" } `"`
//	           | "'" { Char | Escape | `"` } "'" .
//	Escape     = `\"` | `\'` | `\\` .
//	Char       = /* any Unicode character except `"`, "'" and `\` */ .
//
// The lexer reads an attribute name as a letter or "_" followed by letters,
// digits, "_" and "." (so that an unknown name such as coordinate.groupId is
// reported whole).
//
// # Limits
//
// An expression is at most MaxLen bytes of valid UTF-8, parentheses nest at
// most MaxDepth levels (so compiling and matching use bounded stack), and
// its regular expressions together compile to at most MaxRegexSize
// instructions (counted repetitions such as {1000} expand; without this
// bound a 4 KiB expression could cost hundreds of megabytes to compile).
// Anything beyond is a SyntaxError. Evaluation short-circuits left to right.
//
// # Errors
//
// Every error Compile returns is a *SyntaxError: Pos is the 0-based byte
// offset of the mistake (len(expr) when the expression ends too early), Line
// and Col the 1-based line and column (in characters) for people, Msg what
// is wrong. Error() reads
//
//	csel: column 17: expected a string after "=~", found end of expression
//
// with "line L, " before the column when the expression spans lines.
//
// # Path prefixes
//
// PathPrefix returns a prefix every path a selector matches must have (from
// == and =^ on path and the literal start of a regular expression on path,
// combined through && and ||), or "" when it cannot tell. It lets a listing
// skip what a selector cannot match without evaluating it on every entry; it
// is conservative, never an authorization decision by itself.
package csel
