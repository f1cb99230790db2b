package csel

import (
	"errors"
	"regexp/syntax"
	"strings"
	"testing"
)

const (
	digestA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	teamA   = `format == "docker" && path =^ "/v2/team-a/"`
)

// errorCases are malformed expressions with where the error must be found.
var errorCases = []struct {
	in        string
	pos, col  int
	line      int    // 0 means 1
	msg       string // a substring of Msg
	fullError string // when set, the exact Error()
}{
	{in: ``, pos: 0, col: 1, msg: "empty expression", fullError: "csel: column 1: empty expression"},
	{in: "  \t\n ", pos: 0, col: 1, msg: "empty expression"},
	{in: `path`, pos: 4, col: 5, msg: `expected an operator ("==", "!=", "=~" or "=^") after "path", found end of expression`},
	{in: `path ==`, pos: 7, col: 8, msg: `expected a string after "==", found end of expression`},
	{in: `format == "docker" && path =~ `, pos: 30, col: 31,
		fullError: `csel: column 31: expected a string after "=~", found end of expression`},
	{in: `path == x`, pos: 8, col: 9, msg: `expected a string after "==", found name "x"`},
	{in: `path = "a"`, pos: 5, col: 6, msg: `unexpected "=" (want "==", "=~" or "=^")`},
	{in: `=`, pos: 0, col: 1, msg: `unexpected "="`},
	{in: `&`, pos: 0, col: 1, msg: `unexpected "&" (want "&&")`},
	{in: `|`, pos: 0, col: 1, msg: `unexpected "|" (want "||")`},
	{in: `!`, pos: 0, col: 1, msg: `unexpected "!"`},
	{in: `path == "a" & format == "docker"`, pos: 12, col: 13, msg: `unexpected "&"`},
	{in: `path == "a" | format == "docker"`, pos: 12, col: 13, msg: `unexpected "|"`},
	{in: `path == "a" format == "docker"`, pos: 12, col: 13, msg: `expected "&&", "||" or end of expression, found name "format"`},
	{in: `path == "a" and format == "docker"`, pos: 12, col: 13, msg: `found name "and" (write "&&")`},
	{in: `path == "a" or format == "docker"`, pos: 12, col: 13, msg: `(write "||")`},
	{in: `path == "a" == "b"`, pos: 12, col: 13, msg: `found "=="`},
	{in: `path == "a" "b"`, pos: 12, col: 13, msg: `found a string`},
	{in: `path == "a" &&`, pos: 14, col: 15, msg: `expected a comparison (such as path =^ "/v2/") or "(", found end of expression`},
	{in: `&& path == "a"`, pos: 0, col: 1, msg: `expected a comparison`},
	{in: `path == "a" || || format == "docker"`, pos: 15, col: 16, msg: `expected a comparison (such as path =^ "/v2/") or "(", found "||"`},
	{in: `(path == "a"`, pos: 12, col: 13, msg: `expected "&&", "||" or ")" to close the "(" at column 1, found end of expression`},
	{in: `format == "docker" && ((path == "a") || path == "b"`, pos: 51, col: 52, msg: `to close the "(" at column 23`},
	{in: "path == \"a\" &&\n(path == \"b\"\n", pos: 28, line: 3, col: 1, msg: `to close the "(" at line 2, column 1, found end of expression`},
	{in: `path == "a")`, pos: 11, col: 12, msg: `unexpected ")" without a matching "("`},
	{in: `()`, pos: 1, col: 2, msg: `expected a comparison (such as path =^ "/v2/") or "(", found ")"`},
	{in: `)`, pos: 0, col: 1, msg: `found ")"`},
	{in: `(`, pos: 1, col: 2, msg: `found end of expression`},
	{in: `name == "x"`, pos: 0, col: 1, msg: `unknown attribute "name" (the attributes are path and format)`},
	{in: `format == "docker" && coordinate.groupId == "x"`, pos: 22, col: 23, msg: `unknown attribute "coordinate.groupId"`},
	{in: `PATH == "x"`, pos: 0, col: 1, msg: `unknown attribute "PATH"`},
	{in: `"a" == path`, pos: 0, col: 1, msg: `expected a comparison (such as path =^ "/v2/") or "(", found a string`},
	{in: `1 == path`, pos: 0, col: 1, msg: `unexpected character '1'`},
	{in: `path == "a" && ü`, pos: 15, col: 16, msg: `unexpected character 'ü'`},
	{in: `path == "é" && ü`, pos: 16, col: 16, msg: `unexpected character 'ü'`}, // Pos in bytes, Col in characters
	{in: `path == "abc`, pos: 8, col: 9, msg: `unterminated string`},
	{in: `path == 'abc"`, pos: 8, col: 9, msg: `unterminated string`},
	{in: `path == "a\`, pos: 8, col: 9, msg: `unterminated string`},
	{in: `path == "a\"`, pos: 8, col: 9, msg: `unterminated string`},
	{in: `path == "a\qb"`, pos: 10, col: 11, msg: `unknown escape "\q" in string`},
	{in: `path == "\u0041"`, pos: 9, col: 10, msg: `unknown escape "\u"`},
	{in: `path =~ "/v2/app\.v1/.*"`, pos: 16, col: 17, msg: `unknown escape "\."`},
	{in: `path == "\é"`, pos: 9, col: 10, msg: `unknown escape "\é"`},
	{in: `path =~ "(a"`, pos: 8, col: 9, msg: "invalid regular expression: missing closing ): `(a`"},
	{in: `path =~ "a)|(b"`, pos: 8, col: 9, msg: "invalid regular expression: unexpected ): `a)|(b`"},
	{in: `format == "docker" && format =~ "*"`, pos: 32, col: 33, msg: "invalid regular expression: missing argument to repetition operator: `*`"},
	{in: `path =~ "(?<=a)b"`, pos: 8, col: 9, msg: "invalid regular expression"},
	{in: `path =~ "a{1001}"`, pos: 8, col: 9, msg: "invalid repeat count"},
	{in: `path =~ "\\1"`, pos: 8, col: 9, msg: "invalid escape sequence"},
	{in: `path =~ "` + strings.Repeat("a{1000}", 6) + `"`, pos: 8, col: 9, msg: "regular expression too large"},
	{in: `path =~ "/v2/.{1000}/x" || path =~ "` + strings.Repeat("[^/]{1000}", 4) + `"`, pos: 35, col: 36, msg: "at most 5000 instructions"},
	{in: `path =~ "` + strings.Repeat("(a{10}){100}", 5) + `"`, pos: 8, col: 9, msg: "regular expression too large"},
	{in: "path == \"a\" &&\n  nme == \"x\"", pos: 17, line: 2, col: 3,
		fullError: `csel: line 2, column 3: unknown attribute "nme" (the attributes are path and format)`},
	{in: "path == \"\xff\"", pos: 9, col: 10, msg: "invalid UTF-8"},
	{in: strings.Repeat("(", MaxDepth+1) + `path == "a"` + strings.Repeat(")", MaxDepth+1), pos: MaxDepth, col: MaxDepth + 1, msg: "parentheses nested deeper than 32 levels"},
	{in: strings.Repeat("(", 64) + `path == "a"` + strings.Repeat(")", 64), pos: MaxDepth, col: MaxDepth + 1, msg: "nested deeper"},
	{in: strings.Repeat("(", MaxLen+1), pos: MaxLen, col: MaxLen + 1, msg: "expression longer than 4096 bytes"},
	{in: `path =^ "` + strings.Repeat("a", MaxLen) + `"`, pos: MaxLen, col: MaxLen + 1, msg: "expression longer than 4096 bytes"},
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range errorCases {
		s, err := Compile(tc.in)
		if err == nil {
			t.Errorf("Compile(%q) = %q, want an error", trunc(tc.in), s)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Compile(%q): %T %v, want a *SyntaxError", trunc(tc.in), err, err)
			continue
		}
		line := tc.line
		if line == 0 {
			line = 1
		}
		if se.Pos != tc.pos || se.Col != tc.col || se.Line != line {
			t.Errorf("Compile(%q): pos %d line %d col %d (%v), want pos %d line %d col %d",
				trunc(tc.in), se.Pos, se.Line, se.Col, err, tc.pos, line, tc.col)
		}
		if !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("Compile(%q): %q, want it to contain %q", trunc(tc.in), se.Msg, tc.msg)
		}
		if tc.fullError != "" && err.Error() != tc.fullError {
			t.Errorf("Compile(%q).Error() = %q, want %q", trunc(tc.in), err.Error(), tc.fullError)
		}
	}
}

func TestLimitsAccepted(t *testing.T) {
	deep := strings.Repeat("(", MaxDepth) + `path == "a"` + strings.Repeat(")", MaxDepth)
	if _, err := Compile(deep); err != nil {
		t.Errorf("%d levels: %v", MaxDepth, err)
	}
	// Sequential (not nested) parentheses and long chains are not depth.
	chain := `path == "a"` + strings.Repeat(` || (path == "b" && format == "docker")`, 80)
	if len(chain) > MaxLen {
		t.Fatalf("chain is %d bytes", len(chain))
	}
	s, err := Compile(chain)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Match(Attrs{Path: "b", Format: "docker"}) || s.Match(Attrs{Path: "b"}) {
		t.Error("chain matches wrongly")
	}
	re := `path =~ "` + strings.Repeat("[0-9a-f]{64}", 70) + `"`
	if _, err := Compile(re); err != nil {
		t.Errorf("about %d instructions: %v", 70*65, err)
	}
	long := `path =^ "` + strings.Repeat("a", MaxLen-10) + `"`
	if _, err := Compile(long); err != nil || len(long) != MaxLen {
		t.Errorf("%d bytes: %v", len(long), err)
	}
}

type matchCase struct {
	path, format string
	want         bool
}

func docker(path string, want bool) matchCase { return matchCase{path, "docker", want} }

// matchTables are selectors and what they select.
var matchTables = []struct {
	expr  string
	cases []matchCase
}{
	{teamA, []matchCase{
		docker("/v2/team-a/app/manifests/1.0", true),
		docker("/v2/team-a/app/manifests/"+digestA, true),
		docker("/v2/team-a/group/app/manifests/latest", true),
		docker("/v2/team-a/app/blobs/"+digestA, true),
		docker("/v2/team-a/app/blobs/uploads/", true),
		docker("/v2/team-a/app/blobs/uploads/3f1c0c1e-8f6a-4c9e-9d36-0d6a5d5c2f5b", true),
		docker("/v2/team-a/app/tags/list", true),
		docker("/v2/team-b/app/manifests/1.0", false),
		docker("/v2/team-b/app/blobs/"+digestA, false),
		docker("/v2/team-ab/app/manifests/1.0", false),
		docker("/v2/team-a", false),
		docker("/v2/", false),
		docker("", false),
		{"/v2/team-a/app/manifests/1.0", "maven2", false},
		{"/v2/team-a/app/manifests/1.0", "", false},
		{"/v2/team-a/app/manifests/1.0", "Docker", false},
	}},
	{`path =~ "/v2/(team-a|shared)/.*"`, []matchCase{
		docker("/v2/team-a/app/manifests/1.0", true),
		docker("/v2/shared/base/blobs/"+digestA, true),
		docker("/v2/team-a/", true),
		docker("/v2/team-b/app/manifests/1.0", false),
		docker("/x/v2/team-a/app/manifests/1.0", false), // full match: anchored at the start
		docker("/v2/team-a", false),
		{"/v2/shared/x", "maven2", true}, // no format condition
	}},
	// Tags only: a manifest reference without a colon.
	{`path =~ "/v2/team-a/.+/manifests/[^/:]+"`, []matchCase{
		docker("/v2/team-a/app/manifests/1.0", true),
		docker("/v2/team-a/app/manifests/latest", true),
		docker("/v2/team-a/app/manifests/"+digestA, false),
		docker("/v2/team-a/app/blobs/"+digestA, false),
		docker("/v2/team-b/app/manifests/1.0", false),
	}},
	// Digests only, any repository: manifests and blobs.
	{`path =~ "/v2/.+/(manifests|blobs)/sha256:[0-9a-f]{64}"`, []matchCase{
		docker("/v2/team-a/app/manifests/"+digestA, true),
		docker("/v2/team-b/app/blobs/"+digestA, true),
		docker("/v2/team-a/app/manifests/1.0", false),
		docker("/v2/team-a/app/manifests/"+digestA+"0", false), // full match: anchored at the end
		docker("/v2/team-a/app/blobs/uploads/"+digestA, false),
		docker("/v2/team-a/x/y/blobs/"+digestA, true), // .+ spans slashes
	}},
	// Blobs but not uploads.
	{`path =~ "/v2/[^/]+(/[^/]+)*/blobs/sha256:[0-9a-f]{64}" && path =^ "/v2/team-b/"`, []matchCase{
		docker("/v2/team-b/app/blobs/"+digestA, true),
		docker("/v2/team-b/a/b/blobs/"+digestA, true),
		docker("/v2/team-b/app/blobs/uploads/x", false),
		docker("/v2/team-b/app/manifests/"+digestA, false),
		docker("/v2/team-a/app/blobs/"+digestA, false),
	}},
	// Uploads.
	{`path =~ "/v2/.+/blobs/uploads/.*"`, []matchCase{
		docker("/v2/team-a/app/blobs/uploads/", true),
		docker("/v2/team-a/app/blobs/uploads/abc", true),
		docker("/v2/team-a/app/blobs/"+digestA, false),
	}},
	{`format == "docker"`, []matchCase{
		docker("/v2/anything", true), {"/v2/anything", "maven2", false}, {"", "", false},
	}},
	{`format != "docker"`, []matchCase{
		docker("/v2/anything", false), {"/v2/anything", "maven2", true}, {"", "", true},
	}},
	{`format =~ "dock.*"`, []matchCase{docker("", true), {"", "dock", true}, {"", "xdocker", false}}},
	{`format =^ "dock"`, []matchCase{docker("", true), {"", "doc", false}}},
	{`path != "/v2/"`, []matchCase{docker("/v2/", false), docker("/v2/x", true), docker("", true)}},
	{`path == "/v2/"`, []matchCase{docker("/v2/", true), docker("/v2/x", false), docker("/v2", false)}},
	{`path =^ ""`, []matchCase{docker("", true), docker("/v2/x", true)}},
	{`path =~ ""`, []matchCase{docker("", true), docker("/v2/x", false)}},
	// Full match with an alternation and with flags: the wrapping must not
	// leak (\A(?:a|b)\z, not \Aa|b\z), and (?m) cannot unanchor.
	{`path =~ "a|b"`, []matchCase{docker("a", true), docker("b", true), docker("ab", false), docker("xa", false), docker("bx", false)}},
	{`path =~ "(?m)a$"`, []matchCase{docker("a", true), docker("a\nb", false)}},
	{`path =~ "(?m)^b"`, []matchCase{docker("b", true), docker("a\nb", false)}},
	{`path =~ "(?i)/V2/TEAM-A/.*"`, []matchCase{docker("/v2/team-a/x", true), docker("/v2/team-b/x", false)}},
	// Precedence: && binds tighter than ||.
	{`format == "maven2" && path =^ "/v2/a/" || path =^ "/v2/b/"`, []matchCase{
		docker("/v2/b/x", true), docker("/v2/a/x", false), {"/v2/a/x", "maven2", true},
	}},
	{`path =^ "/v2/b/" || format == "maven2" && path =^ "/v2/a/"`, []matchCase{
		docker("/v2/b/x", true), docker("/v2/a/x", false), {"/v2/a/x", "maven2", true}, {"/v2/c/x", "maven2", false},
	}},
	{`format == "maven2" && (path =^ "/v2/a/" || path =^ "/v2/b/")`, []matchCase{
		docker("/v2/b/x", false), {"/v2/b/x", "maven2", true}, {"/v2/c/x", "maven2", false},
	}},
	{`(format == "docker" || format == "maven2") && (path =^ "/v2/a/" || path =^ "/v2/b/") && path != "/v2/a/secret"`, []matchCase{
		docker("/v2/a/x", true), {"/v2/b/x", "maven2", true}, {"/v2/b/x", "npm", false}, docker("/v2/a/secret", false), docker("/v2/c/x", false),
	}},
	{`((((path == "x"))))`, []matchCase{docker("x", true), docker("y", false)}},
	// White space between tokens (any of it) and none at all.
	{"format==\"docker\"&&path=^'/v2/a/'", []matchCase{docker("/v2/a/x", true), docker("/v2/b/x", false)}},
	{"\n\tformat == \"docker\"\r\n\t&& path =^ \"/v2/a/\"\n", []matchCase{docker("/v2/a/x", true), docker("/v2/b/x", false)}},
	// Escapes.
	{`path == "a\"b"`, []matchCase{docker(`a"b`, true), docker(`a\"b`, false)}},
	{`path == 'a\'b'`, []matchCase{docker(`a'b`, true)}},
	{`path == 'a"b'`, []matchCase{docker(`a"b`, true)}},
	{`path == "a'b"`, []matchCase{docker(`a'b`, true)}},
	{`path == "a\'b"`, []matchCase{docker(`a'b`, true)}},
	{`path == "a\\b"`, []matchCase{docker(`a\b`, true), docker(`ab`, false)}},
	{`path =~ "/v2/app\\.v1/.*"`, []matchCase{docker("/v2/app.v1/x", true), docker("/v2/appxv1/x", false)}},
	{`path =~ "/v2/app.v1/.*"`, []matchCase{docker("/v2/app.v1/x", true), docker("/v2/appxv1/x", true)}},
	{`path =~ "/v2/\\d+"`, []matchCase{docker("/v2/42", true), docker("/v2/4a", false)}},
	{`path =~ 'a\\\\b'`, []matchCase{docker(`a\b`, true), docker(`ab`, false)}},
	{"path == \"line\nbreak\"", []matchCase{docker("line\nbreak", true)}},
	{`path == "é/ü"`, []matchCase{docker("é/ü", true), docker("e/u", false)}},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTables {
		s, err := Compile(tt.expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.expr, err)
			continue
		}
		if s.String() != tt.expr {
			t.Errorf("String() = %q, want %q", s.String(), tt.expr)
		}
		for _, c := range tt.cases {
			a := Attrs{Path: c.path, Format: c.format}
			if got := s.Match(a); got != c.want {
				t.Errorf("%s\n  Match(%+v) = %v, want %v", tt.expr, a, got, c.want)
			}
			// Soundness of PathPrefix on everything the tables match.
			if s.Match(a) && !strings.HasPrefix(c.path, s.PathPrefix()) {
				t.Errorf("%s matches %q, which lacks its PathPrefix %q", tt.expr, c.path, s.PathPrefix())
			}
		}
	}
}

func TestEscapes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"plain"`, "plain"},
		{`'plain'`, "plain"},
		{`""`, ""},
		{`''`, ""},
		{`"a\"b"`, `a"b`},
		{`"a\'b"`, `a'b`},
		{`'a\'b'`, `a'b`},
		{`'a\"b'`, `a"b`},
		{`'a"b'`, `a"b`},
		{`"a'b"`, `a'b`},
		{`"\\"`, `\`},
		{`"\\\\"`, `\\`},
		{`"\\\""`, `\"`},
		{`"x\\"`, `x\`},
		{`"\"\"\""`, `"""`},
		{`"\\d"`, `\d`},
		{`"é\\ü"`, `é\ü`},
		{"\"tab\there\"", "tab\there"},
	} {
		s, err := Compile("path == " + tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := s.root.lit; got != tc.want {
			t.Errorf("%s = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrecedenceTree(t *testing.T) {
	for _, tc := range []struct{ in, canon string }{
		{`path == "a" || path == "b" && path == "c"`, `path=="a"||path=="b"&&path=="c"`},
		{`path == "a" && path == "b" || path == "c"`, `path=="a"&&path=="b"||path=="c"`},
		{`(path == "a" || path == "b") && path == "c"`, `(path=="a"||path=="b")&&path=="c"`},
		{`path == "a" && (path == "b" || path == "c")`, `path=="a"&&(path=="b"||path=="c")`},
		// Redundant parentheses go; groups of the same operator flatten.
		{`(path == "a") || ((path == "b" && path == "c"))`, `path=="a"||path=="b"&&path=="c"`},
		{`(path == "a" && path == "b") && (path == "c" && path == "d")`, `path=="a"&&path=="b"&&path=="c"&&path=="d"`},
		{`path == "a" || (path == "b" || path == "c")`, `path=="a"||path=="b"||path=="c"`},
		// Literals take the quotes needing fewer escapes.
		{`path == 'a"b'`, `path=='a"b'`},
		{`path == "a\"b'c"`, `path=="a\"b'c"`},
		{`path == 'a\\b'`, `path=="a\\b"`},
	} {
		s, err := Compile(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		var b strings.Builder
		s.root.canon(&b)
		if b.String() != tc.canon {
			t.Errorf("%s\n  canon %s\n  want  %s", tc.in, b.String(), tc.canon)
		}
	}
	// Or inside And is a node of its own: (a||b)&&c has two kids.
	s, _ := Compile(`(path == "a" || path == "b") && path == "c"`)
	if s.root.kind != kAnd || len(s.root.kids) != 2 || s.root.kids[0].kind != kOr {
		t.Errorf("tree: %+v", s.root)
	}
}

func TestPathPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`path =^ "/v2/team-a/"`, "/v2/team-a/"},
		{teamA, "/v2/team-a/"},
		{`path =^ "/v2/team-a/" && format == "docker"`, "/v2/team-a/"},
		{`path == "/v2/team-a/app/manifests/1.0"`, "/v2/team-a/app/manifests/1.0"},
		{`path =~ "/v2/team-a/.*"`, "/v2/team-a/"},
		{`path =~ "^/v2/team-a/.*$"`, "/v2/team-a/"},
		{`path =~ "/v2/(team-a|team-b)/.*"`, "/v2/team-"},
		{`path =~ "/v2/(team-a|shared)/.*"`, "/v2/"},
		{`path =~ "/v2/team-a/.*|/v2/team-b/.*"`, "/v2/team-"},
		{`path =~ "(/v2/team-a/)(app)/.*"`, "/v2/team-a/app/"},
		{`path =~ "/v2/a+b"`, "/v2/a"},
		{`path =~ "/v2/a{2,}b"`, "/v2/a"},
		{`path =~ "/v2/x?"`, "/v2/"},
		{`path =~ "(/v2/a)*"`, ""},
		{`path =~ "(/v2/a)+"`, "/v2/a"},
		{`path =~ ".*"`, ""},
		{`path =~ "[/]v2/"`, "/v2/"}, // a one-character class is a literal
		{`path =~ "/v2/[ab]/"`, "/v2/"},
		{`path =~ "(?i)/v2/team-a/.*"`, ""},
		{`path =~ "/v2/(?i:team)-a/.*"`, "/v2/"},
		{`path =~ "/v2/é.*"`, "/v2/é"},
		{"path =~ \"/v2/\uFFFDx\"", "/v2/"}, // U+FFFD also matches invalid bytes
		{"path == \"/v2/\uFFFDx\"", "/v2/\uFFFDx"},
		{`path =^ "/v2/a/" || path =^ "/v2/b/"`, "/v2/"},
		{`path =^ "/v2/team-a/" || path == "/v2/team-a/x"`, "/v2/team-a/"},
		{`path =^ "/v2/é" || path =^ "/v2/è"`, "/v2/"}, // not cut inside a character
		{`path =^ "/v2/a/" || format == "docker"`, ""},
		{`path =^ "/v2/a/" || path != "/v2/a/"`, ""},
		{`path != "/v2/a/"`, ""},
		{`format == "docker"`, ""},
		{`format =^ "/v2/"`, ""},
		{`path =^ "/v2/" && path =^ "/v2/team-a/"`, "/v2/team-a/"},
		{`path =~ "/v2/team-a/.*" && path =^ "/v2/"`, "/v2/team-a/"},
		{`format == "docker" && (path =^ "/v2/a/x" || path =^ "/v2/a/y")`, "/v2/a/"},
		{`(path =^ "/v2/a/" && format == "docker") || (path =^ "/v2/a/" && format == "maven2")`, "/v2/a/"},
		{`path =^ ""`, ""},
	} {
		s, err := Compile(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := s.PathPrefix(); got != tc.want {
			t.Errorf("PathPrefix(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestZeroSelector(t *testing.T) {
	var nilSel *Selector
	var zero Selector
	a := Attrs{Path: "/v2/x", Format: "docker"}
	if nilSel.Match(a) || zero.Match(a) {
		t.Error("a nil or zero Selector matched")
	}
	if nilSel.String() != "" || nilSel.PathPrefix() != "" || zero.String() != "" || zero.PathPrefix() != "" {
		t.Error("nil or zero Selector: non-empty String or PathPrefix")
	}
}

func TestMatchAllocs(t *testing.T) {
	s, err := Compile(`format == "docker" && (path =~ "/v2/(team-a|shared)/.+/manifests/[^/]+" || path =^ "/v2/team-b/") && path != "/v2/x"`)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/v2/team-a/app/manifests/1.0", "/v2/team-b/app/blobs/" + digestA, "/v2/team-c/app/manifests/1.0"}
	for _, p := range paths {
		a := Attrs{Path: p, Format: "docker"}
		if n := testing.AllocsPerRun(200, func() { s.Match(a) }); n != 0 {
			t.Errorf("Match(%q): %v allocations", p, n)
		}
	}
}

// samplePaths are what the fuzzer evaluates every compiled selector on.
var samplePaths = []string{
	"",
	"/v2/",
	"/v2/team-a/app/manifests/1.0",
	"/v2/team-a/app/manifests/" + digestA,
	"/v2/team-b/app/blobs/" + digestA,
	"/v2/team-b/app/blobs/uploads/3f1c0c1e",
	"/v2/shared/base/tags/list",
	"/v2/é\xff/x",
	"a\nb",
}

func FuzzCompile(f *testing.F) {
	for _, tc := range errorCases {
		f.Add(tc.in, "/v2/team-a/app/manifests/1.0")
	}
	for _, tt := range matchTables {
		for _, c := range tt.cases {
			f.Add(tt.expr, c.path)
		}
	}
	f.Fuzz(func(t *testing.T, expr, path string) {
		s, err := Compile(expr)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile(%q): %T %v, want a *SyntaxError", expr, err, err)
			}
			if se.Pos < 0 || se.Pos > len(expr) {
				t.Fatalf("Compile(%q): Pos %d outside [0, %d]", expr, se.Pos, len(expr))
			}
			if se.Line < 1 || se.Col < 1 || se.Msg == "" || !strings.HasPrefix(se.Error(), "csel: ") {
				t.Fatalf("Compile(%q): malformed error %+v", expr, se)
			}
			return
		}
		if len(expr) > MaxLen {
			t.Fatalf("Compile accepted %d bytes", len(expr))
		}
		if s.String() != expr {
			t.Fatalf("String() = %q, want %q", s.String(), expr)
		}
		s2, err := Compile(s.String())
		if err != nil {
			t.Fatalf("Compile(String()) of %q: %v", expr, err)
		}
		// The canonical form compiles back to the same tree.
		var b strings.Builder
		s.root.canon(&b)
		canon := b.String()
		s3, err := Compile(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q: %v", canon, expr, err)
		}
		b.Reset()
		s3.root.canon(&b)
		if b.String() != canon {
			t.Fatalf("canonical form of %q is not stable: %q then %q", expr, canon, b.String())
		}
		if s3.PathPrefix() != s.PathPrefix() || s2.PathPrefix() != s.PathPrefix() {
			t.Fatalf("PathPrefix of %q: %q, String() form %q, canonical %q", expr, s.PathPrefix(), s2.PathPrefix(), s3.PathPrefix())
		}
		for _, p := range append(samplePaths, path) {
			for _, format := range []string{"docker", "maven2", ""} {
				a := Attrs{Path: p, Format: format}
				m := s.Match(a)
				if s2.Match(a) != m || s3.Match(a) != m {
					t.Fatalf("%q on %+v: %v, String() form %v, canonical %q %v", expr, a, m, s2.Match(a), canon, s3.Match(a))
				}
				if m && !strings.HasPrefix(p, s.PathPrefix()) {
					t.Fatalf("%q matches %q, which lacks its PathPrefix %q", expr, p, s.PathPrefix())
				}
			}
		}
	})
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestRegexSize checks the estimate against the size of the compiled
// program: never far below it (the bound must hold), never far above (so
// that reasonable expressions fit).
func TestRegexSize(t *testing.T) {
	for _, re := range []string{
		"a", "abc", "[0-9a-f]{64}", "a{2,5}", "a{3,}", "(ab)*", "a|b|c", "(a{10}){100}",
		`/v2/(team-a|shared)/.*`, `\pL{1000}`, "(?i)abc", "a+", "a?", "a{0,10}", "(a|bc){5,8}",
		`/v2/[^/]+(/[^/]+)*/blobs/sha256:[0-9a-f]{64}`, `((a{0,3}b){2,4}c?){3}`,
	} {
		tree, err := syntax.Parse(re, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(tree.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		est, real := regexSize(tree), len(prog.Inst)
		if est < real-3 || est > 2*real+3 {
			t.Errorf("%q: estimate %d, program %d", re, est, real)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, bc := range []struct{ name, expr string }{
		{"prefix", teamA},
		{"regex", `path =~ "/v2/(team-a|shared)/.+/manifests/[^/]+"`},
		{"mixed", `format == "docker" && (path =~ "/v2/(team-a|shared)/.+/manifests/[^/]+" || path =^ "/v2/team-b/") && path != "/v2/x"`},
	} {
		s, err := Compile(bc.expr)
		if err != nil {
			b.Fatal(err)
		}
		a := Attrs{Path: "/v2/team-a/app/manifests/1.0", Format: "docker"}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(a)
			}
		})
	}
}
