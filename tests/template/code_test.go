package template_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const module = "github.com/airlock-registry/airlock"

// use is where the code reads an environment variable or calls an AWS API.
type use struct {
	name  string // variable name, or IAM action ("s3:PutObject")
	where string // file:line, relative to the repository
}

// codeUse is what a function's code (its package and every package of this
// module it imports) reads from the environment and calls on AWS.
type codeUse struct {
	env []use
	// calls maps a service ("dynamodb", "s3") to the IAM actions its calls
	// need, split into object-level ("s3:GetObject" on bucket/*) and
	// resource-level (the table, the bucket) ones.
	objectActions, resourceActions map[string][]use
}

// envReaders are the functions whose first (string literal) argument names an
// environment variable: os.Getenv, os.LookupEnv, config.FromEnv.
var envReaders = map[string]bool{"Getenv": true, "LookupEnv": true, "FromEnv": true}

// Lambda sets these itself; code may read them without the template.
var lambdaReserved = map[string]bool{"AWS_REGION": true, "AWS_DEFAULT_REGION": true, "AWS_LAMBDA_FUNCTION_NAME": true,
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true, "AWS_LAMBDA_FUNCTION_VERSION": true, "_HANDLER": true, "LAMBDA_TASK_ROOT": true,
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true, "_X_AMZN_TRACE_ID": true}

// sdkActions maps an aws-sdk-go-v2 operation (a method called with
// arguments in a file importing the service) to the IAM actions it needs:
// object-level (on arn/*) first, then resource-level.
var sdkActions = map[string]map[string][2][]string{
	"dynamodb": {
		"GetItem": {nil, {"dynamodb:GetItem"}}, "PutItem": {nil, {"dynamodb:PutItem"}},
		"UpdateItem": {nil, {"dynamodb:UpdateItem"}}, "DeleteItem": {nil, {"dynamodb:DeleteItem"}},
		"Query": {nil, {"dynamodb:Query"}}, "Scan": {nil, {"dynamodb:Scan"}},
		"BatchGetItem": {nil, {"dynamodb:BatchGetItem"}}, "BatchWriteItem": {nil, {"dynamodb:BatchWriteItem"}},
		"TransactWriteItems": {nil, {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}},
		"TransactGetItems":   {nil, {"dynamodb:GetItem"}},
	},
	"s3": {
		// A missing key reads as 404 (not 403) only with s3:ListBucket.
		"GetObject": {{"s3:GetObject"}, {"s3:ListBucket"}}, "PresignGetObject": {{"s3:GetObject"}, nil},
		"HeadObject": {{"s3:GetObject"}, {"s3:ListBucket"}}, "PutObject": {{"s3:PutObject"}, nil},
		"CopyObject": {{"s3:GetObject", "s3:PutObject"}, nil}, "UploadPartCopy": {{"s3:GetObject", "s3:PutObject"}, nil},
		"CreateMultipartUpload": {{"s3:PutObject"}, nil}, "UploadPart": {{"s3:PutObject"}, nil},
		"CompleteMultipartUpload": {{"s3:PutObject"}, nil}, "AbortMultipartUpload": {{"s3:AbortMultipartUpload"}, nil},
		"ListParts": {{"s3:ListMultipartUploadParts"}, nil}, "DeleteObject": {{"s3:DeleteObject"}, nil},
		"DeleteObjects": {{"s3:DeleteObject"}, nil}, "ListObjectsV2": {nil, {"s3:ListBucket"}},
		"ListMultipartUploads": {nil, {"s3:ListBucketMultipartUploads"}},
	},
}

// scanCode reads the sources of pkg (e.g. ./functions/api) and of every
// package of this module it imports (test files excluded).
func scanCode(root, pkg string) (codeUse, error) {
	cu := codeUse{objectActions: map[string][]use{}, resourceActions: map[string][]use{}}
	cmd := exec.Command("go", "list", "-deps", "-tags", "lambda.norpc", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \"\\t\"}}", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return cu, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 || (f[0] != module && !strings.HasPrefix(f[0], module+"/")) {
			continue
		}
		for _, name := range f[2:] {
			if err := scanFile(root, filepath.Join(f[1], name), &cu); err != nil {
				return cu, err
			}
		}
	}
	return cu, nil
}

func scanFile(root, path string, cu *codeUse) error {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return err
	}
	var services []string
	for _, imp := range file.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		switch p {
		case "github.com/aws/aws-sdk-go-v2/service/dynamodb":
			services = append(services, "dynamodb")
		case "github.com/aws/aws-sdk-go-v2/service/s3":
			services = append(services, "s3")
		}
	}
	rel, _ := filepath.Rel(root, path)
	ast.Inspect(file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		where := fmt.Sprintf("%s:%d", rel, fset.Position(call.Pos()).Line)
		if envReaders[sel.Sel.Name] {
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				cu.env = append(cu.env, use{name, where})
			}
		}
		for _, svc := range services {
			if acts, ok := sdkActions[svc][sel.Sel.Name]; ok {
				for _, a := range acts[0] {
					cu.objectActions[svc] = append(cu.objectActions[svc], use{a, where})
				}
				for _, a := range acts[1] {
					cu.resourceActions[svc] = append(cu.resourceActions[svc], use{a, where})
				}
			}
		}
		return true
	})
	return nil
}

// goBuildRe finds the go build command of a Makefile target.
var goBuildRe = regexp.MustCompile(`(?m)^(.*)\bgo build (.*) (\./functions/[A-Za-z0-9_/-]+)\s*$`)

// checkMakeTarget runs `make -n build-<id>` and checks the go build it
// names (linux, the template's architecture, CGO off, -tags lambda.norpc,
// -trimpath, output $ARTIFACTS_DIR/bootstrap). With build set it runs the
// target for real and checks the binary (ELF for that architecture).
// It returns the function's package (./functions/<dir>).
func checkMakeTarget(root string, f fn, artifacts string, build bool, p *problems) string {
	target := "build-" + f.id
	cmd := exec.Command("make", "-n", "--no-print-directory", "-C", root, target, "ARTIFACTS_DIR="+artifacts)
	cmd.Env = makeEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.add("%s: `make -n %s` fails (sam build runs this target for BuildMethod makefile): %v: %s", f.id, target, err, firstLine(out))
		return ""
	}
	m := goBuildRe.FindSubmatch(out)
	if m == nil {
		p.add("%s: `make %s` runs no `go build ./functions/<name>`:\n%s", f.id, target, out)
		return ""
	}
	env, flags, pkg := string(m[1]), string(m[2]), string(m[3])
	arch := "amd64"
	if len(f.architectures) == 1 && f.architectures[0] == "arm64" {
		arch = "arm64"
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch} {
		if !strings.Contains(env, want) {
			p.add("%s: `make %s` builds without %s (template Architectures %v)", f.id, target, want, f.architectures)
		}
	}
	for _, want := range []string{"-tags lambda.norpc", "-trimpath", "-o " + filepath.Join(artifacts, "bootstrap")} {
		if !strings.Contains(flags, want) {
			p.add("%s: `make %s`: go build lacks %q", f.id, target, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, pkg, "main.go")); err != nil {
		p.add("%s: `make %s` builds %s, which has no main.go", f.id, target, pkg)
		return ""
	}
	if !build {
		return pkg
	}
	run := exec.Command("make", "-s", "--no-print-directory", "-C", root, target, "ARTIFACTS_DIR="+artifacts)
	run.Env = makeEnv()
	if out, err := run.CombinedOutput(); err != nil {
		p.add("%s: `make %s` does not build: %v\n%s", f.id, target, err, out)
		return pkg
	}
	bin, err := elf.Open(filepath.Join(artifacts, "bootstrap"))
	if err != nil {
		p.add("%s: `make %s` left no ELF bootstrap in ARTIFACTS_DIR: %v", f.id, target, err)
		return pkg
	}
	defer bin.Close()
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[arch]
	if bin.Machine != want {
		p.add("%s: bootstrap is built for %v, the template says %s", f.id, bin.Machine, arch)
	}
	return pkg
}

// makeEnv is the environment without a parent make's flags (make test runs us).
func makeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAKEFLAGS=") && !strings.HasPrefix(kv, "MFLAGS=") && !strings.HasPrefix(kv, "MAKELEVEL=") {
			env = append(env, kv)
		}
	}
	return env
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// checkEnv compares what the code reads with what the template sets.
func checkEnv(f fn, pkg string, cu codeUse, p *problems) {
	read := map[string]string{}
	for _, u := range cu.env {
		if _, seen := read[u.name]; !seen {
			read[u.name] = u.where
		}
	}
	var names []string
	for n := range read {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := f.env[n]; !ok && !lambdaReserved[n] {
			p.add("%s: the code reads %s (%s) but template.yaml does not set it in the function's Environment", f.id, n, read[n])
		}
	}
	names = names[:0]
	for n := range f.env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := read[n]; !ok {
			p.add("%s: template.yaml sets %s but no code of %s (or the module packages it imports) reads it", f.id, n, pkg)
		}
	}
}
