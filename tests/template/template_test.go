package template_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-registry/airlock/localdev/harness"
)

// check runs every check on the template at path with the sam env file
// samEnv; build runs each function's Makefile target for real.
func check(t *testing.T, root, path, samEnv string, build bool) problems {
	t.Helper()
	tm, err := loadTemplate(path)
	if err != nil {
		t.Fatal(err)
	}
	sch, err := loadSchema()
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	sch.checkSchema(tm, &p)
	if tm.parseErr != nil {
		p.add("goformation cannot parse the template: %v", tm.parseErr)
		return p
	}
	fns := tm.functions()
	if len(fns) == 0 {
		p.add("template: no AWS::Serverless::Function")
	}
	for _, f := range fns {
		checkFunctionShape(f, &p)
		pkg := checkMakeTarget(root, f, t.TempDir(), build, &p)
		if pkg == "" {
			continue
		}
		cu, err := scanCode(root, pkg)
		if err != nil {
			t.Fatal(err)
		}
		checkEnv(f, pkg, cu, &p)
		checkIAM(f, tm, cu, &p)
		checkNoExtraGrants(f, cu, pkg, &p)
	}
	checkSamEnv(samEnv, fns, tm, &p)
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestTemplate: template.yaml and localdev/sam-env.json pass every check,
// and every function's Makefile target builds its bootstrap.
func TestTemplate(t *testing.T) {
	root := repoRoot(t)
	p := check(t, root, filepath.Join(root, "template.yaml"), filepath.Join(root, "localdev", "sam-env.json"), true)
	for _, msg := range p {
		t.Error(msg)
	}
}

// TestBrokenTemplates: each deliberate break of template.yaml (or of the sam
// env file) is caught with a message that names it.
func TestBrokenTemplates(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	goodEnv := filepath.Join(root, "localdev", "sam-env.json")
	for _, tc := range []struct {
		name     string
		old, new string // the break: replace the first old with new
		samEnv   string // testdata file instead of localdev/sam-env.json
		want     []string
	}{
		{name: "unknown function property", old: "      Handler: bootstrap\n", new: "      Handler: bootstrap\n      Timeoutt: 3\n",
			want: []string{`Resources.ApiFunction.Properties: unknown property "Timeoutt"`}},
		{name: "unknown Globals property", old: "    MemorySize: 1024\n", new: "    MemorySize: 1024\n    Memory: 1\n",
			want: []string{`Globals.Function: unknown property "Memory"`}},
		{name: "unknown nested property", old: "        PointInTimeRecoveryEnabled: true\n", new: "        PointInTimeRecoveryEnable: true\n",
			want: []string{`unknown property "PointInTimeRecoveryEnable"`}},
		{name: "unknown resource type", old: "Outputs:\n", new: "  Bogus:\n    Type: AWS::S3::Buckett\n    Properties: {}\n\nOutputs:\n",
			want: []string{`Resources.Bogus: unknown resource type "AWS::S3::Buckett"`}},
		{name: "variable the code reads is missing", old: "          AIRLOCK_MAX_BODY: !Ref MaxBody\n", new: "",
			want: []string{"ApiFunction: the code reads AIRLOCK_MAX_BODY (functions/api/limits.go:", "does not set it"}},
		{name: "variable no code reads", old: "          LOG_LEVEL: !Ref LogLevel\n", new: "          LOG_LEVEL: !Ref LogLevel\n          AIRLOCK_UNUSED: x\n",
			want: []string{"ApiFunction: template.yaml sets AIRLOCK_UNUSED but no code of ./functions/api"}},
		{name: "missing S3 object action", old: "                - s3:DeleteObject\n", new: "",
			want: []string{"the code calls s3:DeleteObject (shared/storage/s3store/", "on bucket BlobBucket but no policy statement allows it on !Sub ${BlobBucket.Arn}/*"}},
		{name: "missing S3 bucket action", old: "                - s3:ListBucketMultipartUploads\n", new: "",
			want: []string{"the code calls s3:ListBucketMultipartUploads", "on !GetAtt BlobBucket.Arn"}},
		{name: "table statement on the wrong resource", old: "              Resource: !GetAtt RegistryTable.Arn\n", new: "              Resource: !GetAtt BlobBucket.Arn\n",
			want: []string{"the code calls dynamodb:GetItem (shared/storage/dynamo/", "on table RegistryTable but no policy statement allows it on !GetAtt RegistryTable.Arn"}},
		{name: "star action", old: "                - dynamodb:Query\n", new: "                - dynamodb:*\n",
			want: []string{`allows "dynamodb:*": no "*" actions`, "the code calls dynamodb:Query"}},
		{name: "a grant no code calls", old: "                - dynamodb:DeleteItem\n", new: "                - dynamodb:DeleteItem\n                - dynamodb:BatchWriteItem\n",
			want: []string{"ApiFunction: grants dynamodb:BatchWriteItem on RegistryTable (resource), which the code of ./functions/api never calls"}},
		{name: "Scan granted to the api function", old: "                - dynamodb:DeleteItem\n", new: "                - dynamodb:DeleteItem\n                - dynamodb:Scan\n",
			want: []string{"ApiFunction: its policy allows dynamodb:Scan on RegistryTable, which only PurgeFunction may have"}},
		{name: "Scan missing from the purge function", old: "                - dynamodb:Scan\n", new: "",
			want: []string{"PurgeFunction: the code calls dynamodb:Scan (shared/storage/dynamo/", "no policy statement allows it on !GetAtt RegistryTable.Arn"}},
		{name: "no Makefile target", old: "  ApiFunction:\n    Type: AWS::Serverless::Function\n", new: "  NoSuchFunction:\n    Type: AWS::Serverless::Function\n",
			want: []string{"NoSuchFunction: `make -n build-NoSuchFunction` fails"}},
		{name: "architecture the Makefile does not build", old: "    Architectures: [arm64]\n", new: "    Architectures: [x86_64]\n",
			want: []string{"ApiFunction: Architectures is [x86_64], want [arm64]", "builds without GOARCH=amd64"}},
		{name: "CodeUri not the repository", old: "      CodeUri: .\n", new: "      CodeUri: functions/api\n",
			want: []string{`ApiFunction: CodeUri "functions/api"`}},
		{name: "sam env file sets undeclared variables", samEnv: "sam-env-broken.json",
			want: []string{"sam-env-broken.json: ApiFunction.AIRLOCK_TABEL is not declared", `"OtherFunction" is not a function`,
				"ApiFunction.AIRLOCK_BUCKET must be set: in template.yaml it references the resource BlobBucket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := string(orig)
			if tc.old != "" {
				if !strings.Contains(doc, tc.old) {
					t.Fatalf("template.yaml no longer contains %q: update this case", tc.old)
				}
				doc = strings.Replace(doc, tc.old, tc.new, 1)
			}
			path := filepath.Join(t.TempDir(), "template.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			env := goodEnv
			if tc.samEnv != "" {
				env = filepath.Join("testdata", tc.samEnv)
			}
			p := check(t, root, path, env, false)
			all := strings.Join(p, "\n")
			t.Logf("caught:\n%s", all)
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no problem mentions %q; got:\n%s", w, all)
				}
			}
		})
	}
}

// overridesRe finds parameter_overrides = "K=V K2=V2" in samconfig.toml.
var overridesRe = regexp.MustCompile(`(?m)^parameter_overrides\s*=\s*"([^"]*)"`)

// TestSamconfigParameters: every parameter infra/samconfig.toml overrides
// exists in template.yaml (sam deploy would fail on an unknown one).
func TestSamconfigParameters(t *testing.T) {
	root := repoRoot(t)
	tm, err := loadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	params, _ := tm.raw["Parameters"].(map[string]any)
	b, err := os.ReadFile(filepath.Join(root, "infra", "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ms := overridesRe.FindAllStringSubmatch(string(b), -1)
	if len(ms) == 0 {
		t.Fatal("infra/samconfig.toml has no parameter_overrides")
	}
	for _, m := range ms {
		for _, kv := range strings.Fields(m[1]) {
			k, _, _ := strings.Cut(kv, "=")
			if _, ok := params[k]; !ok {
				t.Errorf("infra/samconfig.toml overrides %q, which template.yaml does not declare", k)
			}
		}
	}
}
