// Package template_test checks template.yaml against the code: every
// function's Makefile target builds the right binary, the environment the
// code reads is exactly what the template sets, each function has IAM for
// the table and bucket it touches (no "*" actions), no resource uses an
// unknown property (goformation's SAM JSON schema), and localdev/sam-env.json
// only overrides variables the template declares. For each value of the
// FrontDoor parameter (frontdoor_test.go) the conditions are evaluated: the
// HttpApi stack has the HTTP API ($default route and stage, payload 2.0, the
// API Gateway permission) and no function URL, the FunctionUrl stack has the
// nested stack infra/function-url.yaml (public buffered URL, both
// permissions) and no API Gateway resource; both pass cfn-lint when installed.
package template_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// tmpl is a parsed template: goformation's typed view (intrinsics resolved
// with parameter defaults) and the raw document (intrinsics kept as
// {"Ref": ...} / {"Fn::...": ...}) for references.
type tmpl struct {
	path     string
	typed    *cloudformation.Template
	parseErr error
	raw      map[string]any
}

func loadTemplate(path string) (*tmpl, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &tmpl{path: path, raw: raw}
	// goformation refuses unknown fields of known types: the schema check
	// names them; the function checks need the typed template. The
	// properties its schema predates (schemaAdditions) are left out of the
	// typed view only.
	typedJS, err := json.Marshal(withoutAdditions(raw))
	if err != nil {
		return nil, err
	}
	t.typed, t.parseErr = goformation.ParseJSON(typedJS)
	return t, nil
}

// withoutAdditions returns a copy of the raw template without the resource
// properties of schemaAdditions.
func withoutAdditions(raw map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range raw {
		out[k] = v
	}
	res, _ := raw["Resources"].(map[string]any)
	copied := map[string]any{}
	for id, r := range res {
		copied[id] = r
		rm, _ := r.(map[string]any)
		typ, _ := rm["Type"].(string)
		props, _ := rm["Properties"].(map[string]any)
		if len(schemaAdditions.properties[typ]) == 0 || props == nil {
			continue
		}
		np := map[string]any{}
		for k, v := range props {
			if _, added := schemaAdditions.properties[typ][k]; !added {
				np[k] = v
			}
		}
		nr := map[string]any{}
		for k, v := range rm {
			nr[k] = v
		}
		nr["Properties"] = np
		copied[id] = nr
	}
	if res != nil {
		out["Resources"] = copied
	}
	return out
}

// fn is one AWS::Serverless::Function with the Globals merged in.
type fn struct {
	id            string
	runtime       string
	handler       string
	codeURI       string
	buildMethod   string
	architectures []string
	// env is the merged Environment.Variables, raw (values may be intrinsics).
	env map[string]any
	// policies are the raw Policies entries.
	policies []any
}

// functions returns the template's functions, Globals.Function merged under
// each (a function's own value wins; environment variables merge by name).
func (t *tmpl) functions() []fn {
	var g *global.Function
	if r, ok := t.typed.Globals["Function"]; ok {
		g, _ = r.(*global.Function)
	}
	rawRes, _ := t.raw["Resources"].(map[string]any)
	rawGlobalEnv := dig(t.raw, "Globals", "Function", "Environment", "Variables")
	var out []fn
	for id, f := range t.typed.GetAllServerlessFunctionResources() {
		m := fn{id: id, env: map[string]any{}}
		if g != nil {
			m.runtime, m.handler = deref(g.Runtime), deref(g.Handler)
			if g.Architectures != nil {
				m.architectures = *g.Architectures
			}
			if g.CodeUri != nil {
				m.codeURI = deref(g.CodeUri.String)
			}
		}
		if f.Runtime != nil {
			m.runtime = *f.Runtime
		}
		if f.Handler != nil {
			m.handler = *f.Handler
		}
		if f.Architectures != nil {
			m.architectures = f.Architectures
		}
		if f.CodeUri != nil && f.CodeUri.String != nil {
			m.codeURI = *f.CodeUri.String
		}
		if bm, ok := f.AWSCloudFormationMetadata["BuildMethod"].(string); ok {
			m.buildMethod = bm
		}
		if vars, ok := rawGlobalEnv.(map[string]any); ok {
			for k, v := range vars {
				m.env[k] = v
			}
		}
		res, _ := rawRes[id].(map[string]any)
		if vars, ok := dig(res, "Properties", "Environment", "Variables").(map[string]any); ok {
			for k, v := range vars {
				m.env[k] = v
			}
		}
		switch p := dig(res, "Properties", "Policies").(type) {
		case []any:
			m.policies = p
		case nil:
		default:
			m.policies = []any{p}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// resourceType returns the Type of a resource ("" when there is none).
func (t *tmpl) resourceType(id string) string {
	s, _ := dig(t.raw, "Resources", id, "Type").(string)
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// dig walks nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// refs returns the logical ids v references (Ref, Fn::GetAtt, ${X} and
// ${X.Attr} in Fn::Sub), each with the attribute ("" for Ref), and for a
// Fn::Sub the string's text after the reference (e.g. "/*").
type ref struct{ id, attr, suffix string }

func refs(v any) []ref {
	var out []ref
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 1 {
				if r, ok := x["Ref"].(string); ok {
					out = append(out, ref{id: r})
					return
				}
				switch g := x["Fn::GetAtt"].(type) {
				case string:
					id, attr, _ := strings.Cut(g, ".")
					out = append(out, ref{id: id, attr: attr})
					return
				case []any:
					if len(g) == 2 {
						id, _ := g[0].(string)
						attr, _ := g[1].(string)
						out = append(out, ref{id: id, attr: attr})
						return
					}
				}
				if s, ok := x["Fn::Sub"]; ok {
					str, _ := s.(string)
					if l, ok := s.([]any); ok && len(l) > 0 {
						str, _ = l[0].(string)
					}
					for rest := str; ; {
						i := strings.Index(rest, "${")
						if i < 0 {
							break
						}
						j := strings.Index(rest[i:], "}")
						if j < 0 {
							break
						}
						name := rest[i+2 : i+j]
						rest = rest[i+j+1:]
						id, attr, _ := strings.Cut(name, ".")
						out = append(out, ref{id: id, attr: attr, suffix: rest})
					}
					return
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// strings returns v as a list of strings (a string, or a list of them).
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// problems collects the check failures of one template.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkFunctionShape: runtime, architecture, handler and SAM build settings.
func checkFunctionShape(f fn, p *problems) {
	if f.runtime != "provided.al2023" {
		p.add("%s: Runtime is %q, want provided.al2023 (Globals merged)", f.id, f.runtime)
	}
	if !slices.Equal(f.architectures, []string{"arm64"}) {
		p.add("%s: Architectures is %v, want [arm64] (Globals merged)", f.id, f.architectures)
	}
	if f.handler != "bootstrap" {
		p.add("%s: Handler is %q, want bootstrap", f.id, f.handler)
	}
	if f.codeURI != "." || f.buildMethod != "makefile" {
		p.add("%s: CodeUri %q with Metadata.BuildMethod %q: want CodeUri . and BuildMethod makefile (the Makefile target build-%s builds it)",
			f.id, f.codeURI, f.buildMethod, f.id)
	}
}

// checkSamEnv checks an env file for sam local (--env-vars): its function
// keys name template functions, every variable it sets is declared by that
// function (sam local ignores the others), and every declared variable
// whose template value references a resource (which does not exist locally)
// is overridden.
func checkSamEnv(path string, fns []fn, t *tmpl, p *problems) {
	data, err := os.ReadFile(path)
	if err != nil {
		p.add("sam env file: %v", err)
		return
	}
	var doc map[string]map[string]string
	if err := json.Unmarshal(data, &doc); err != nil {
		p.add("%s: not a JSON object of objects of strings: %v", filepath.Base(path), err)
		return
	}
	byID := map[string]fn{}
	for _, f := range fns {
		byID[f.id] = f
	}
	for key, vars := range doc {
		if key == "Parameters" {
			for name := range vars {
				if !slices.ContainsFunc(fns, func(f fn) bool { _, ok := f.env[name]; return ok }) {
					p.add("%s: Parameters.%s is declared by no function in template.yaml (sam local ignores it)", filepath.Base(path), name)
				}
			}
			continue
		}
		f, ok := byID[key]
		if !ok {
			p.add("%s: %q is not a function of template.yaml", filepath.Base(path), key)
			continue
		}
		for name := range vars {
			if _, ok := f.env[name]; !ok {
				p.add("%s: %s.%s is not declared in the function's Environment in template.yaml (sam local ignores it)", filepath.Base(path), key, name)
			}
		}
	}
	for _, f := range fns {
		for name, v := range f.env {
			for _, r := range refs(v) {
				if t.resourceType(r.id) == "" {
					continue // a parameter or pseudo parameter
				}
				if _, ok := doc[f.id][name]; !ok {
					if _, ok := doc["Parameters"][name]; !ok {
						p.add("%s: %s.%s must be set: in template.yaml it references the resource %s, which does not exist under sam local",
							filepath.Base(path), f.id, name, r.id)
					}
				}
			}
		}
	}
}
