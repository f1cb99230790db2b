package template_test

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7/schema"
)

// samSchema is goformation's SAM JSON schema (CloudFormation resource
// specification plus the AWS::Serverless::* types).
type samSchema struct {
	root map[string]any
	defs map[string]any
}

func loadSchema() (*samSchema, error) {
	var root map[string]any
	if err := json.Unmarshal([]byte(schema.SamSchema), &root); err != nil {
		return nil, err
	}
	defs, _ := root["definitions"].(map[string]any)
	s := &samSchema{root: root, defs: defs}
	s.supplement()
	return s, nil
}

// schemaAdditions are what template.yaml (and infra/function-url.yaml) use
// that goformation v7.14.9's schema predates: a top-level section and
// resource properties, each as CloudFormation's resource registry (and
// cfn-lint, which lints them) defines it. Anything else unknown is still an
// error. loadTemplate hides the properties from goformation's typed parse,
// which refuses unknown fields.
var schemaAdditions = struct {
	sections   map[string]any
	properties map[string]map[string]any // resource type -> property -> schema
}{
	// Rules: parameter assertions (FrontDoor FunctionUrl refuses DomainName).
	sections: map[string]any{"Rules": map[string]any{"type": "object"}},
	properties: map[string]map[string]any{
		// Oct 2025: lambda:InvokeFunction only through a function URL.
		"AWS::Lambda::Permission": {"InvokedViaFunctionUrl": map[string]any{"type": "boolean"}},
	},
}

func (s *samSchema) supplement() {
	props, _ := s.root["properties"].(map[string]any)
	for k, v := range schemaAdditions.sections {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	for typ, add := range schemaAdditions.properties {
		known, _ := dig(s.resolve(s.defs[typ]), "properties", "Properties").(map[string]any)
		known = s.resolve(known)
		if p, ok := known["properties"].(map[string]any); ok {
			for k, v := range add {
				if _, ok := p[k]; !ok {
					p[k] = v
				}
			}
		}
	}
}

// checkSchema validates the template's top-level sections, Globals and every
// resource (by its Type's definition) for unknown and missing required
// properties. Values that are intrinsic functions are not checked further.
func (s *samSchema) checkSchema(t *tmpl, p *problems) {
	props, _ := s.root["properties"].(map[string]any)
	for _, k := range sortedKeys(t.raw) {
		if _, ok := props[k]; !ok {
			p.add("template: unknown top-level section %q", k)
		}
	}
	if g, ok := t.raw["Globals"].(map[string]any); ok {
		s.validate(g, props["Globals"], "Globals", p)
		// The schema leaves Globals sections open; SAM does not.
		sections, _ := dig(props, "Globals", "properties").(map[string]any)
		for _, name := range sortedKeys(g) {
			sec, _ := g[name].(map[string]any)
			known, _ := dig(sections, name, "properties").(map[string]any)
			for _, k := range sortedKeys(sec) {
				if _, ok := known[k]; !ok && known != nil {
					p.add("Globals.%s: unknown property %q (not in the SAM schema)", name, k)
				}
			}
		}
	}
	res, _ := t.raw["Resources"].(map[string]any)
	for _, id := range sortedKeys(res) {
		r, _ := res[id].(map[string]any)
		typ, _ := r["Type"].(string)
		def, ok := s.defs[typ]
		if !ok {
			if strings.HasPrefix(typ, "Custom::") {
				continue
			}
			p.add("Resources.%s: unknown resource type %q", id, typ)
			continue
		}
		s.validate(r, def, "Resources."+id, p)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isIntrinsic reports whether v is {"Ref": ...}, {"Fn::...": ...} or {"Condition": ...}.
func isIntrinsic(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// resolve follows $ref.
func (s *samSchema) resolve(node any) map[string]any {
	m, _ := node.(map[string]any)
	for m != nil {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		m, _ = s.defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
	}
	return nil
}

// kindOf names a JSON value's type as JSON schema does.
func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "scalar"
}

// kindOfType maps a JSON schema type to kindOf's names.
func kindOfType(typ string) string {
	if typ == "object" || typ == "array" {
		return typ
	}
	return "scalar"
}

func (s *samSchema) validate(v any, node any, path string, p *problems) {
	n := s.resolve(node)
	if n == nil || isIntrinsic(v) {
		return
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		branches, ok := n[key].([]any)
		if !ok {
			continue
		}
		var best problems
		bestSet := false
		for _, b := range branches {
			bn := s.resolve(b)
			if typ, _ := bn["type"].(string); typ != "" && kindOfType(typ) != kindOf(v) {
				continue // the branch is for another kind of value
			}
			var bp problems
			s.validate(v, bn, path, &bp)
			if len(bp) == 0 {
				return
			}
			if !bestSet || len(bp) < len(best) {
				best, bestSet = bp, true
			}
		}
		*p = append(*p, best...)
		return
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := n["properties"].(map[string]any)
		patterns, _ := n["patternProperties"].(map[string]any)
		for _, k := range sortedKeys(x) {
			if ps, ok := props[k]; ok {
				s.validate(x[k], ps, path+"."+k, p)
				continue
			}
			matched := false
			for pat, ps := range patterns {
				if re, err := regexp.Compile(pat); err == nil && re.MatchString(k) {
					s.validate(x[k], ps, path+"."+k, p)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
			switch ap := n["additionalProperties"].(type) {
			case bool:
				if !ap {
					p.add("%s: unknown property %q (not in the SAM schema)", path, k)
				}
			case map[string]any:
				s.validate(x[k], ap, path+"."+k, p)
			}
		}
		if req, ok := n["required"].([]any); ok {
			for _, r := range req {
				if name, _ := r.(string); name != "" {
					if _, ok := x[name]; !ok {
						p.add("%s: required property %q is missing", path, name)
					}
				}
			}
		}
	case []any:
		if items, ok := n["items"]; ok {
			for i, e := range x {
				s.validate(e, items, path+"["+itoa(i)+"]", p)
			}
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
