package csel

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest expression Compile accepts, in bytes.
const MaxLen = 4096

// MaxDepth is how deeply Compile lets parentheses nest; "((x))" is 2 levels.
const MaxDepth = 32

// MaxRegexSize bounds the regular expressions of one selector together, in
// program instructions (about one per character, class or operator, with
// counted repetitions expanded: "[0-9a-f]{64}" is about 64). It keeps
// compiling (which otherwise reaches hundreds of megabytes for a 4 KiB
// expression of repetitions such as "a{1000}a{1000}...") and matching (time
// linear in path length times program size) cheap.
const MaxRegexSize = 5000

// Attrs are the attributes a selector is evaluated against.
type Attrs struct {
	// Path is the request path, e.g. "/v2/team-a/app/manifests/1.0".
	Path string
	// Format is the repository format, "docker" for Airlock's repositories.
	Format string
}

// Selector is a compiled content selector. It is immutable and safe for
// concurrent use. A nil or zero Selector matches nothing.
type Selector struct {
	src    string
	root   *node
	prefix string
}

// Compile parses and compiles a selector expression (see the package
// documentation for the language). Every error it returns is a
// *SyntaxError.
func Compile(expr string) (*Selector, error) {
	if len(expr) > MaxLen {
		return nil, errAt(expr, MaxLen, fmt.Sprintf("expression longer than %d bytes", MaxLen))
	}
	if !utf8.ValidString(expr) {
		i := 0
		for i < len(expr) {
			r, w := utf8.DecodeRuneInString(expr[i:])
			if r == utf8.RuneError && w == 1 {
				break
			}
			i += w
		}
		return nil, errAt(expr, i, "invalid UTF-8")
	}
	p := &parser{src: expr}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, errAt(expr, 0, "empty expression")
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.trailing()
	}
	return &Selector{src: expr, root: root, prefix: root.pathPrefix()}, nil
}

// Match reports whether the selector selects content with attributes a.
func (s *Selector) Match(a Attrs) bool {
	if s == nil || s.root == nil {
		return false
	}
	return s.root.match(&a)
}

// String returns the source expression, exactly as given to Compile.
func (s *Selector) String() string {
	if s == nil {
		return ""
	}
	return s.src
}

// PathPrefix returns a prefix that every path the selector matches has, or
// "" when the selector implies none (or when it cannot tell: the answer is
// conservative). For example `format == "docker" && path =^ "/v2/team-a/"`
// gives "/v2/team-a/", `path =~ "/v2/(team-a|team-b)/.*"` gives "/v2/team-",
// and `path =^ "/v2/a/" || format == "docker"` gives "". The prefix is valid
// UTF-8.
func (s *Selector) PathPrefix() string {
	if s == nil {
		return ""
	}
	return s.prefix
}

// SyntaxError is a malformed selector expression.
type SyntaxError struct {
	// Pos is the 0-based byte offset of the mistake in the expression;
	// len(expr) when the expression ends too early.
	Pos int
	// Line is the 1-based line of Pos (1 unless the expression spans lines).
	Line int
	// Col is the 1-based column of Pos on its line, counted in characters.
	Col int
	// Msg says what is wrong.
	Msg string
}

// Error returns the message with its position, e.g.
// `csel: column 17: expected a string after "=~", found end of expression`
// (`csel: line 2, column 3: ...` when the expression spans lines).
func (e *SyntaxError) Error() string {
	if e.Line > 1 {
		return fmt.Sprintf("csel: line %d, column %d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("csel: column %d: %s", e.Col, e.Msg)
}

func errAt(src string, pos int, msg string) *SyntaxError {
	pos = min(max(pos, 0), len(src))
	before := src[:pos]
	line := 1 + strings.Count(before, "\n")
	if i := strings.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return &SyntaxError{Pos: pos, Line: line, Col: 1 + utf8.RuneCountInString(before), Msg: msg}
}

// ---- the compiled tree ----

type nodeKind uint8

const (
	kCmp nodeKind = iota
	kAnd
	kOr
)

type attr uint8

const (
	aPath attr = iota
	aFormat
)

var attrNames = [...]string{aPath: "path", aFormat: "format"}

type op uint8

const (
	opEq op = iota
	opNe
	opMatch
	opPrefix
)

var opNames = [...]string{opEq: "==", opNe: "!=", opMatch: "=~", opPrefix: "=^"}

type node struct {
	kind nodeKind
	attr attr
	op   op
	lit  string         // the unescaped string literal
	re   *regexp.Regexp // opMatch: \A(?:lit)\z
	// rePrefix is a literal every match of re starts with (opMatch on path).
	rePrefix string
	kids     []*node // kAnd, kOr: two or more, none of the same kind
}

func (n *node) match(a *Attrs) bool {
	switch n.kind {
	case kAnd:
		for _, k := range n.kids {
			if !k.match(a) {
				return false
			}
		}
		return true
	case kOr:
		for _, k := range n.kids {
			if k.match(a) {
				return true
			}
		}
		return false
	}
	v := a.Path
	if n.attr == aFormat {
		v = a.Format
	}
	switch n.op {
	case opEq:
		return v == n.lit
	case opNe:
		return v != n.lit
	case opPrefix:
		return strings.HasPrefix(v, n.lit)
	default:
		return n.re.MatchString(v)
	}
}

// pathPrefix is a prefix every path n matches has ("" if none is known).
func (n *node) pathPrefix() string {
	switch n.kind {
	case kAnd:
		// Every match satisfies every conjunct, so any conjunct's prefix
		// holds; the longest says the most. (Conflicting prefixes mean
		// nothing matches, and then any answer holds.)
		best := ""
		for _, k := range n.kids {
			if p := k.pathPrefix(); len(p) > len(best) {
				best = p
			}
		}
		return best
	case kOr:
		// A match satisfies some disjunct: only what they share holds.
		common := n.kids[0].pathPrefix()
		for _, k := range n.kids[1:] {
			if common == "" {
				break
			}
			common = commonPrefix(common, k.pathPrefix())
		}
		return common
	}
	if n.attr != aPath {
		return ""
	}
	switch n.op {
	case opEq, opPrefix:
		return n.lit
	case opMatch:
		return n.rePrefix
	}
	return ""
}

// commonPrefix is the longest common prefix of a and b, cut back to a
// character boundary so that it stays valid UTF-8.
func commonPrefix(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	for i > 0 && i < len(a) && !utf8.RuneStart(a[i]) {
		i--
	}
	return a[:i]
}

// regexPrefix returns a literal string every string re matches (in full)
// starts with, and whether re matches exactly that string followed by
// nothing (so that a concatenation can continue the prefix). It only
// follows what it is sure of: case-folded literals, classes and anything
// optional end the prefix.
func regexPrefix(re *syntax.Regexp) (prefix string, complete bool) {
	switch re.Op {
	case syntax.OpEmptyMatch,
		syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		// Zero width: consumes nothing.
		return "", true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		var b strings.Builder
		for _, r := range re.Rune {
			// The matcher reads invalid UTF-8 in the input as U+FFFD, so a
			// U+FFFD in the pattern does not pin the input's bytes.
			if r == utf8.RuneError || !utf8.ValidRune(r) {
				return b.String(), false
			}
			b.WriteRune(r)
		}
		return b.String(), true
	case syntax.OpCapture:
		return regexPrefix(re.Sub[0])
	case syntax.OpConcat:
		var b strings.Builder
		for _, sub := range re.Sub {
			p, c := regexPrefix(sub)
			b.WriteString(p)
			if !c {
				return b.String(), false
			}
		}
		return b.String(), true
	case syntax.OpAlternate:
		common, complete := regexPrefix(re.Sub[0])
		for _, sub := range re.Sub[1:] {
			p, c := regexPrefix(sub)
			if !c || p != common {
				complete = false
			}
			common = commonPrefix(common, p)
		}
		return common, complete
	case syntax.OpPlus:
		p, _ := regexPrefix(re.Sub[0])
		return p, false
	case syntax.OpRepeat:
		if re.Min >= 1 {
			p, _ := regexPrefix(re.Sub[0])
			return p, false
		}
	}
	return "", false
}

// regexSize estimates (from above) how many instructions re compiles to,
// saturating past MaxRegexSize.
func regexSize(re *syntax.Regexp) int {
	const big = MaxRegexSize + 1
	n := 1
	switch re.Op {
	case syntax.OpLiteral:
		n = max(len(re.Rune), 1)
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			n += regexSize(sub)
		}
	case syntax.OpCapture:
		n = 2 + regexSize(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		n = 1 + regexSize(re.Sub[0])
	case syntax.OpRepeat:
		count := re.Max
		if count < 0 {
			count = re.Min + 1
		}
		count = max(count, 1)
		sub := regexSize(re.Sub[0])
		if sub > big/count {
			return big
		}
		n = count*sub + max(count-re.Min, 1) // each optional copy adds a branch
	}
	return min(n, big)
}

// canon renders n compactly and unambiguously: no white space, parentheses
// only where an || is inside an &&, each literal in the quotes that need
// fewer escapes. It is never longer or more deeply nested than the source
// it was compiled from, and compiles back to the same tree (the tests and
// the fuzzer rely on that).
func (n *node) canon(b *strings.Builder) {
	switch n.kind {
	case kAnd, kOr:
		sep := "&&"
		if n.kind == kOr {
			sep = "||"
		}
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(sep)
			}
			if n.kind == kAnd && k.kind == kOr {
				b.WriteByte('(')
				k.canon(b)
				b.WriteByte(')')
			} else {
				k.canon(b)
			}
		}
		return
	}
	b.WriteString(attrNames[n.attr])
	b.WriteString(opNames[n.op])
	q := byte('"')
	if strings.Count(n.lit, `'`) < strings.Count(n.lit, `"`) {
		q = '\''
	}
	b.WriteByte(q)
	for i := 0; i < len(n.lit); i++ {
		if c := n.lit[i]; c == q || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(n.lit[i])
	}
	b.WriteByte(q)
}

// ---- lexer ----

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tLParen
	tRParen
	tAnd
	tOr
	tEq
	tNe
	tMatch
	tPrefix
)

type token struct {
	kind tokKind
	pos  int    // byte offset of the token's first byte
	val  string // tIdent: the name; tString: the unescaped value
}

// describe names the token for "found ..." in messages.
func (t token) describe(src string) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tIdent:
		return fmt.Sprintf("name %q", t.val)
	case tString:
		return "a string"
	case tLParen:
		return `"("`
	case tRParen:
		return `")"`
	case tAnd:
		return `"&&"`
	case tOr:
		return `"||"`
	}
	return `"` + src[t.pos:t.pos+2] + `"`
}

type parser struct {
	src    string
	off    int   // lexer offset: the first byte after tok
	tok    token // the current token
	depth  int   // open parentheses
	reSize int   // regexSize of the regular expressions so far
}

func (p *parser) errf(pos int, format string, args ...any) *SyntaxError {
	return errAt(p.src, pos, fmt.Sprintf(format, args...))
}

// next reads the token at p.off into p.tok.
func (p *parser) next() error {
	src := p.src
	i := p.off
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
		i++
	}
	if i == len(src) {
		p.tok, p.off = token{kind: tEOF, pos: i}, i
		return nil
	}
	two := func(second byte, k tokKind) bool {
		if i+1 < len(src) && src[i+1] == second {
			p.tok, p.off = token{kind: k, pos: i}, i+2
			return true
		}
		return false
	}
	switch c := src[i]; {
	case c == '(':
		p.tok, p.off = token{kind: tLParen, pos: i}, i+1
	case c == ')':
		p.tok, p.off = token{kind: tRParen, pos: i}, i+1
	case c == '&':
		if !two('&', tAnd) {
			return p.errf(i, `unexpected "&" (want "&&")`)
		}
	case c == '|':
		if !two('|', tOr) {
			return p.errf(i, `unexpected "|" (want "||")`)
		}
	case c == '!':
		if !two('=', tNe) {
			return p.errf(i, `unexpected "!" (want "!="; there is no negation operator)`)
		}
	case c == '=':
		if !two('=', tEq) && !two('~', tMatch) && !two('^', tPrefix) {
			return p.errf(i, `unexpected "=" (want "==", "=~" or "=^")`)
		}
	case c == '"' || c == '\'':
		return p.lexString(i)
	case isLetter(c):
		j := i + 1
		for j < len(src) && (isLetter(src[j]) || '0' <= src[j] && src[j] <= '9' || src[j] == '.') {
			j++
		}
		p.tok, p.off = token{kind: tIdent, pos: i, val: src[i:j]}, j
	default:
		r, _ := utf8.DecodeRuneInString(src[i:])
		return p.errf(i, "unexpected character %q", r)
	}
	return nil
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }

// lexString reads the string literal whose opening quote is at start.
func (p *parser) lexString(start int) error {
	src := p.src
	q := src[start]
	var b []byte // the value, once an escape makes it differ from the source
	from := start + 1
	for i := from; i < len(src); {
		switch c := src[i]; c {
		case q:
			val := src[from:i]
			if b != nil {
				val = string(append(b, val...))
			}
			p.tok, p.off = token{kind: tString, pos: start, val: val}, i+1
			return nil
		case '\\':
			if i+1 == len(src) {
				return p.errf(start, "unterminated string")
			}
			switch e := src[i+1]; e {
			case '"', '\'', '\\':
				b = append(b, src[from:i]...)
				b = append(b, e)
				i += 2
				from = i
			default:
				r, _ := utf8.DecodeRuneInString(src[i+1:])
				return p.errf(i, `unknown escape "\%c" in string (only \", \' and \\ are escapes; write \\ for a backslash)`, r)
			}
		default:
			i++
		}
	}
	return p.errf(start, "unterminated string")
}

// ---- parser ----

func (p *parser) parseOr() (*node, error) {
	n, err := p.parseAnd()
	if err != nil || p.tok.kind != tOr {
		return n, err
	}
	kids := flatten(nil, n, kOr)
	for p.tok.kind == tOr {
		if err := p.next(); err != nil {
			return nil, err
		}
		k, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		kids = flatten(kids, k, kOr)
	}
	return &node{kind: kOr, kids: kids}, nil
}

func (p *parser) parseAnd() (*node, error) {
	n, err := p.parseTerm()
	if err != nil || p.tok.kind != tAnd {
		return n, err
	}
	kids := flatten(nil, n, kAnd)
	for p.tok.kind == tAnd {
		if err := p.next(); err != nil {
			return nil, err
		}
		k, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		kids = flatten(kids, k, kAnd)
	}
	return &node{kind: kAnd, kids: kids}, nil
}

// flatten appends n to kids, or n's children when n is itself a kind node
// (from parentheses: "(a && b) && c" is one && of three).
func flatten(kids []*node, n *node, kind nodeKind) []*node {
	if n.kind == kind {
		return append(kids, n.kids...)
	}
	return append(kids, n)
}

func (p *parser) parseTerm() (*node, error) {
	switch t := p.tok; t.kind {
	case tLParen:
		if p.depth == MaxDepth {
			return nil, p.errf(t.pos, "parentheses nested deeper than %d levels", MaxDepth)
		}
		p.depth++
		if err := p.next(); err != nil {
			return nil, err
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			at := errAt(p.src, t.pos, "")
			where := fmt.Sprintf("column %d", at.Col)
			if at.Line > 1 || strings.Contains(p.src, "\n") {
				where = fmt.Sprintf("line %d, column %d", at.Line, at.Col)
			}
			return nil, p.errf(p.tok.pos, `expected "&&", "||" or ")" to close the "(" at %s, found %s`,
				where, p.tok.describe(p.src))
		}
		p.depth--
		return n, p.next()
	case tIdent:
		return p.parseComparison()
	default:
		return nil, p.errf(t.pos, `expected a comparison (such as path =^ "/v2/") or "(", found %s`, t.describe(p.src))
	}
}

func (p *parser) parseComparison() (*node, error) {
	name := p.tok
	n := &node{kind: kCmp}
	switch name.val {
	case "path":
		n.attr = aPath
	case "format":
		n.attr = aFormat
	default:
		return nil, p.errf(name.pos, "unknown attribute %q (the attributes are path and format)", name.val)
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tEq:
		n.op = opEq
	case tNe:
		n.op = opNe
	case tMatch:
		n.op = opMatch
	case tPrefix:
		n.op = opPrefix
	default:
		return nil, p.errf(p.tok.pos, `expected an operator ("==", "!=", "=~" or "=^") after %q, found %s`,
			name.val, p.tok.describe(p.src))
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	lit := p.tok
	if lit.kind != tString {
		return nil, p.errf(lit.pos, "expected a string after %q, found %s", opNames[n.op], lit.describe(p.src))
	}
	n.lit = lit.val
	if n.op == opMatch {
		// Parse the expression alone first: wrapped unchecked, "a)|(b"
		// would compile as a different, valid expression.
		tree, err := syntax.Parse(lit.val, syntax.Perl)
		if err == nil {
			// Estimated before compiling: compiling is what costs.
			if p.reSize += regexSize(tree); p.reSize > MaxRegexSize {
				return nil, p.errf(lit.pos, "regular expression too large (the regular expressions of a selector expand to at most %d instructions; counted repetitions such as {1000} expand)", MaxRegexSize)
			}
			n.re, err = regexp.Compile(`\A(?:` + lit.val + `)\z`)
		}
		if err != nil {
			msg := err.Error()
			if se, ok := err.(*syntax.Error); ok {
				msg = string(se.Code)
				if se.Expr != "" {
					msg += ": `" + se.Expr + "`"
				}
			}
			return nil, p.errf(lit.pos, "invalid regular expression: %s", msg)
		}
		if n.attr == aPath {
			n.rePrefix, _ = regexPrefix(tree)
		}
	}
	return n, p.next()
}

// trailing is the error for a token after a complete expression.
func (p *parser) trailing() error {
	t := p.tok
	switch {
	case t.kind == tRParen:
		return p.errf(t.pos, `unexpected ")" without a matching "("`)
	case t.kind == tIdent && (t.val == "and" || t.val == "or"):
		op := map[string]string{"and": "&&", "or": "||"}[t.val]
		return p.errf(t.pos, `expected "&&", "||" or end of expression, found name %q (write %q)`, t.val, op)
	}
	return p.errf(t.pos, `expected "&&", "||" or end of expression, found %s`, t.describe(p.src))
}
