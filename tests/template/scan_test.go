package template_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestScanOnlyInPurge: a table Scan reads every item, so only the purge
// function may have dynamodb:Scan (template.yaml grants it to PurgeFunction
// and to no other function), and only package purge calls
// storage.Collector.Scan (a method call Scan with three arguments: ctx,
// cursor, n) outside the storage packages that implement it. checkIAM
// cannot tell this by itself: every function links package dynamo.
func TestScanOnlyInPurge(t *testing.T) {
	root := repoRoot(t)
	tm, err := loadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	granted := map[string]bool{}
	for _, f := range tm.functions() {
		g := policyGrants(f, &p)
		granted[f.id] = slices.Contains(g["RegistryTable"]["resource"], "dynamodb:Scan")
	}
	if len(granted) < 3 {
		t.Fatalf("template.yaml has functions %v, want at least ApiFunction, ProxyfetchFunction and PurgeFunction", granted)
	}
	for id, ok := range granted {
		if want := id == "PurgeFunction"; ok != want {
			t.Errorf("%s: dynamodb:Scan on RegistryTable granted = %v, want %v", id, ok, want)
		}
	}

	allowed := []string{"shared/purge/", "shared/storage/"}
	var calls []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "bin" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Scan" {
				calls = append(calls, rel+":"+strconv.Itoa(fset.Position(call.Pos()).Line))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if !slices.ContainsFunc(allowed, func(prefix string) bool { return strings.HasPrefix(c, prefix) }) {
			t.Errorf("%s calls Scan(ctx, cursor, n): only package purge may scan the table (the other functions have no dynamodb:Scan)", c)
		}
	}
	t.Logf("Scan(ctx, cursor, n) calls: %v", calls)
}
