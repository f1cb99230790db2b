package template_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The FrontDoor parameter picks what clients reach ApiFunction through:
// API Gateway's HTTP API or a Lambda function URL (a nested stack,
// infra/function-url.yaml). These checks evaluate the template's conditions
// for each value and look at the resources that exist then.

// params returns the template's parameter values: each Default, overridden.
func (t *tmpl) params(overrides map[string]string) map[string]any {
	out := map[string]any{}
	ps, _ := t.raw["Parameters"].(map[string]any)
	for name, p := range ps {
		if d, ok := dig(p, "Default").(any); ok && d != nil {
			out[name] = d
		}
	}
	for k, v := range overrides {
		out[k] = v
	}
	return out
}

// conditions evaluates the template's Conditions (Fn::Equals, Fn::Not,
// Fn::And, Fn::Or, Condition, Ref of a parameter) for the parameter values.
func (t *tmpl) conditions(params map[string]any) (map[string]bool, error) {
	defs, _ := t.raw["Conditions"].(map[string]any)
	out := map[string]bool{}
	var eval func(name string, depth int) (bool, error)
	var value func(v any, depth int) (any, error)
	value = func(v any, depth int) (any, error) {
		if depth > 20 {
			return nil, fmt.Errorf("conditions nest too deep")
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return v, nil
		}
		for k, arg := range m {
			args, _ := arg.([]any)
			switch k {
			case "Ref":
				name, _ := arg.(string)
				p, ok := params[name]
				if !ok {
					return nil, fmt.Errorf("condition refers to %q, which is no parameter with a value", name)
				}
				return fmt.Sprint(p), nil
			case "Condition":
				name, _ := arg.(string)
				return eval(name, depth+1)
			case "Fn::Equals":
				if len(args) != 2 {
					return nil, fmt.Errorf("Fn::Equals takes 2 arguments")
				}
				a, err := value(args[0], depth+1)
				if err != nil {
					return nil, err
				}
				b, err := value(args[1], depth+1)
				if err != nil {
					return nil, err
				}
				return fmt.Sprint(a) == fmt.Sprint(b), nil
			case "Fn::Join":
				if len(args) != 2 {
					return nil, fmt.Errorf("Fn::Join takes 2 arguments")
				}
				list, err := value(args[1], depth+1)
				if err != nil {
					return nil, err
				}
				var parts []string
				switch l := list.(type) {
				case string: // a CommaDelimitedList parameter
					parts = strings.Split(l, ",")
				case []any:
					for _, e := range l {
						x, err := value(e, depth+1)
						if err != nil {
							return nil, err
						}
						parts = append(parts, fmt.Sprint(x))
					}
				}
				return strings.Join(parts, fmt.Sprint(args[0])), nil
			case "Fn::Not", "Fn::And", "Fn::Or":
				var bs []bool
				for _, a := range args {
					if name, ok := a.(string); ok { // !Condition X reads as "X" here
						a = map[string]any{"Condition": name}
					}
					x, err := value(a, depth+1)
					if err != nil {
						return nil, err
					}
					b, ok := x.(bool)
					if !ok {
						return nil, fmt.Errorf("%s of a non-condition %v", k, a)
					}
					bs = append(bs, b)
				}
				switch k {
				case "Fn::Not":
					if len(bs) != 1 {
						return nil, fmt.Errorf("Fn::Not takes 1 argument")
					}
					return !bs[0], nil
				case "Fn::And":
					return !slices.Contains(bs, false), nil
				default:
					return slices.Contains(bs, true), nil
				}
			}
			return nil, fmt.Errorf("unsupported %s in a condition", k)
		}
		return nil, nil
	}
	eval = func(name string, depth int) (bool, error) {
		if b, ok := out[name]; ok {
			return b, nil
		}
		def, ok := defs[name]
		if !ok {
			return false, fmt.Errorf("no condition %q", name)
		}
		x, err := value(def, depth+1)
		if err != nil {
			return false, fmt.Errorf("condition %s: %w", name, err)
		}
		b, ok := x.(bool)
		if !ok {
			return false, fmt.Errorf("condition %s is not a boolean", name)
		}
		out[name] = b
		return b, nil
	}
	for name := range defs {
		if _, err := eval(name, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stack is a template with its conditions decided: the resources and
// outputs that exist, Fn::If replaced by the branch taken.
type stack struct {
	resources map[string]map[string]any
	outputs   map[string]map[string]any
	conds     map[string]bool
}

func (t *tmpl) stack(overrides map[string]string) (*stack, error) {
	conds, err := t.conditions(t.params(overrides))
	if err != nil {
		return nil, err
	}
	s := &stack{resources: map[string]map[string]any{}, outputs: map[string]map[string]any{}, conds: conds}
	for section, dst := range map[string]map[string]map[string]any{"Resources": s.resources, "Outputs": s.outputs} {
		m, _ := t.raw[section].(map[string]any)
		for id, v := range m {
			r, _ := v.(map[string]any)
			if c, ok := r["Condition"].(string); ok && !conds[c] {
				continue
			}
			dst[id], _ = decide(r, conds).(map[string]any)
		}
	}
	return s, nil
}

// decide replaces every Fn::If by the branch its condition takes (and drops
// AWS::NoValue).
func decide(v any, conds map[string]bool) any {
	switch x := v.(type) {
	case map[string]any:
		if f, ok := x["Fn::If"].([]any); ok && len(x) == 1 && len(f) == 3 {
			name, _ := f[0].(string)
			if conds[name] {
				return decide(f[1], conds)
			}
			return decide(f[2], conds)
		}
		out := map[string]any{}
		for k, e := range x {
			d := decide(e, conds)
			if r, ok := d.(map[string]any); ok && len(r) == 1 && r["Ref"] == "AWS::NoValue" {
				continue
			}
			out[k] = d
		}
		return out
	case []any:
		var out []any
		for _, e := range x {
			d := decide(e, conds)
			if r, ok := d.(map[string]any); ok && len(r) == 1 && r["Ref"] == "AWS::NoValue" {
				continue
			}
			out = append(out, d)
		}
		return out
	}
	return v
}

func (s *stack) ofType(prefixes ...string) []string {
	var ids []string
	for id, r := range s.resources {
		typ, _ := r["Type"].(string)
		for _, p := range prefixes {
			if strings.HasPrefix(typ, p) {
				ids = append(ids, id+" ("+typ+")")
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// checkRefs: every resource and output of the stack references only
// resources (and parameters) that exist with these parameter values.
func (s *stack) checkRefs(t *tmpl, what string, p *problems) {
	params, _ := t.raw["Parameters"].(map[string]any)
	check := func(kind, id string, v any) {
		for _, r := range refs(v) {
			if _, ok := s.resources[r.id]; ok {
				continue
			}
			if _, ok := params[r.id]; ok || strings.HasPrefix(r.id, "AWS::") {
				continue
			}
			p.add("%s: %s %s references %s, which does not exist then", what, kind, id, r.id)
		}
	}
	for id, r := range s.resources {
		check("resource", id, map[string]any{"Properties": r["Properties"], "DependsOn": r["DependsOn"]})
		for _, d := range stringList(r["DependsOn"]) {
			if _, ok := s.resources[d]; !ok {
				p.add("%s: resource %s depends on %s, which does not exist then", what, id, d)
			}
		}
	}
	for id, o := range s.outputs {
		check("output", id, o)
	}
}

func refsTo(v any, id, attr string) bool {
	return slices.ContainsFunc(refs(v), func(r ref) bool { return r.id == id && (attr == "*" || r.attr == attr) })
}

// apiFunction is the logical id of the function behind either front door.
const apiFunction = "ApiFunction"

// checkFrontDoor checks the stack of t with FrontDoor=door (and
// DomainName=domain): the resources of that front door exist, wired to
// ApiFunction, and none of the other's; the function's timeout and
// environment follow; RegistryUrl is the front door's, UiUrl it + /ui/.
func checkFrontDoor(t *tmpl, root, door, domain string, p *problems) {
	what := "FrontDoor=" + door
	if domain != "" {
		what += " DomainName=" + domain
	}
	s, err := t.stack(map[string]string{"FrontDoor": door, "DomainName": domain})
	if err != nil {
		p.add("%s: %v", what, err)
		return
	}
	s.checkRefs(t, what, p)
	fn := s.resources[apiFunction]
	if fn == nil {
		p.add("%s: no %s", what, apiFunction)
		return
	}
	if v := dig(fn, "Properties", "Environment", "Variables", "AIRLOCK_FRONT_DOOR"); !refsTo(v, "FrontDoor", "") {
		p.add("%s: %s's AIRLOCK_FRONT_DOOR is %v, want !Ref FrontDoor (functions/api adapts proxy fills to it)", what, apiFunction, v)
	}
	if e := dig(fn, "Properties", "Events"); e != nil {
		p.add("%s: %s has Events %v: SAM events cannot be conditional; the front door's resources are explicit", what, apiFunction, e)
	}
	timeout := dig(fn, "Properties", "Timeout")
	url := dig(s.outputs["RegistryUrl"], "Value")
	if url == nil {
		p.add("%s: no RegistryUrl output", what)
	}
	// UiUrl is the front door's URL + /ui/ (the api function serves the web UI there).
	if ui := dig(s.outputs["UiUrl"], "Value"); ui == nil {
		p.add("%s: no UiUrl output (the web UI: RegistryUrl + /ui/)", what)
	} else if reg, _ := dig(url, "Fn::Sub").(string); reg == "" || dig(ui, "Fn::Sub") != reg+"/ui/" {
		p.add("%s: UiUrl %v is not RegistryUrl %v + /ui/", what, ui, url)
	}
	gateway := s.ofType("AWS::ApiGatewayV2::", "AWS::ApiGateway::", "AWS::Serverless::HttpApi", "AWS::Serverless::Api")
	urls := s.ofType("AWS::Lambda::Url")
	nested := ""
	for id, r := range s.resources {
		if r["Type"] == "AWS::Serverless::Application" || r["Type"] == "AWS::CloudFormation::Stack" {
			nested = id
		}
	}
	switch door {
	case "HttpApi":
		if len(urls) > 0 || nested != "" {
			p.add("%s: a function URL exists: %v %s", what, urls, nested)
		}
		if timeout != 29.0 {
			p.add("%s: %s's Timeout is %v, want 29 (API Gateway answers after 30 s)", what, apiFunction, timeout)
		}
		checkHTTPAPI(s, what, domain, p)
		if domain != "" {
			if !refsTo(url, "DomainName", "") {
				p.add("%s: RegistryUrl %v is not the custom domain", what, url)
			}
		} else if !refsTo(url, "HttpApi", "") {
			p.add("%s: RegistryUrl %v is not the HTTP API's host", what, url)
		}
	case "FunctionUrl":
		if len(gateway) > 0 {
			p.add("%s: API Gateway resources exist: %s", what, strings.Join(gateway, ", "))
		}
		if len(urls) > 0 {
			p.add("%s: AWS::Lambda::Url in template.yaml (%v): it belongs to the nested stack", what, urls)
		}
		if !refsTo(timeout, "FunctionUrlTimeout", "") {
			p.add("%s: %s's Timeout is %v, want !Ref FunctionUrlTimeout", what, apiFunction, timeout)
		}
		if max := dig(t.raw, "Parameters", "FunctionUrlTimeout", "MaxValue"); max != 900.0 {
			p.add("%s: FunctionUrlTimeout's MaxValue is %v, want 900 (Lambda's limit)", what, max)
		}
		if d := dig(t.raw, "Parameters", "FunctionUrlTimeout", "Default"); d != 900.0 {
			p.add("%s: FunctionUrlTimeout's Default is %v, want 900", what, d)
		}
		if nested == "" {
			p.add("%s: no nested stack with the function URL", what)
			return
		}
		if !refsTo(url, nested, "Outputs.Host") {
			p.add("%s: RegistryUrl %v is not https://${%s.Outputs.Host}", what, url, nested)
		}
		checkFunctionURLStack(s, root, nested, what, p)
	default:
		p.add("%s: unknown front door", what)
	}
}

// checkHTTPAPI: an HTTP API whose $default route (auto-deployed $default
// stage) proxies every request to ApiFunction with payload 2.0, and the
// permission for API Gateway to invoke it; the custom domain when set.
func checkHTTPAPI(s *stack, what, domain string, p *problems) {
	byType := map[string][]string{}
	for id, r := range s.resources {
		typ, _ := r["Type"].(string)
		byType[typ] = append(byType[typ], id)
	}
	apis := byType["AWS::ApiGatewayV2::Api"]
	if len(apis) != 1 {
		p.add("%s: want one AWS::ApiGatewayV2::Api, got %v", what, apis)
		return
	}
	api := apis[0]
	if pt := dig(s.resources[api], "Properties", "ProtocolType"); pt != "HTTP" {
		p.add("%s: %s ProtocolType %v, want HTTP", what, api, pt)
	}
	integration := ""
	for _, id := range byType["AWS::ApiGatewayV2::Integration"] {
		props, _ := dig(s.resources[id], "Properties").(map[string]any)
		if refsTo(props["ApiId"], api, "") && props["IntegrationType"] == "AWS_PROXY" && props["PayloadFormatVersion"] == "2.0" &&
			refsTo(props["IntegrationUri"], apiFunction, "Arn") {
			integration = id
		}
	}
	if integration == "" {
		p.add("%s: no AWS::ApiGatewayV2::Integration of %s: AWS_PROXY to !GetAtt %s.Arn, PayloadFormatVersion \"2.0\"", what, api, apiFunction)
	}
	if !slices.ContainsFunc(byType["AWS::ApiGatewayV2::Route"], func(id string) bool {
		props, _ := dig(s.resources[id], "Properties").(map[string]any)
		return integration != "" && refsTo(props["ApiId"], api, "") && props["RouteKey"] == "$default" && refsTo(props["Target"], integration, "")
	}) {
		p.add("%s: no $default AWS::ApiGatewayV2::Route of %s targeting integrations/${%s}", what, api, integration)
	}
	if !slices.ContainsFunc(byType["AWS::ApiGatewayV2::Stage"], func(id string) bool {
		props, _ := dig(s.resources[id], "Properties").(map[string]any)
		return refsTo(props["ApiId"], api, "") && props["StageName"] == "$default" && props["AutoDeploy"] == true
	}) {
		p.add("%s: no $default AWS::ApiGatewayV2::Stage of %s with AutoDeploy true", what, api)
	}
	var perms []string
	for _, id := range byType["AWS::Lambda::Permission"] {
		props, _ := dig(s.resources[id], "Properties").(map[string]any)
		if props["Principal"] == "*" {
			p.add("%s: %s grants %v to everyone", what, id, props["Action"])
		}
		if props["Action"] == "lambda:InvokeFunction" && props["Principal"] == "apigateway.amazonaws.com" &&
			refsTo(props["FunctionName"], apiFunction, "*") && refsTo(props["SourceArn"], api, "") {
			perms = append(perms, id)
		}
	}
	if len(perms) != 1 {
		p.add("%s: want one AWS::Lambda::Permission letting apigateway.amazonaws.com invoke %s from %s (SourceArn), got %v", what, apiFunction, api, perms)
	}
	domains, mappings := byType["AWS::ApiGatewayV2::DomainName"], byType["AWS::ApiGatewayV2::ApiMapping"]
	if domain == "" {
		if len(domains)+len(mappings) > 0 {
			p.add("%s: custom domain resources without DomainName: %v %v", what, domains, mappings)
		}
		return
	}
	if len(domains) != 1 || len(mappings) != 1 {
		p.add("%s: want one AWS::ApiGatewayV2::DomainName and one ApiMapping, got %v %v", what, domains, mappings)
		return
	}
	m, _ := dig(s.resources[mappings[0]], "Properties").(map[string]any)
	if !refsTo(m["ApiId"], api, "") || !refsTo(m["DomainName"], domains[0], "") || m["ApiMappingKey"] != nil {
		p.add("%s: %s does not map %s at the root of %s", what, mappings[0], domains[0], api)
	}
}

// checkFunctionURLStack: the nested stack passes ApiFunction's name and ARN
// to a template with a public (NONE), buffered function URL of that function,
// lambda:InvokeFunctionUrl for everyone with FunctionUrlAuthType NONE,
// lambda:InvokeFunction for everyone only through the URL, and nothing else.
func checkFunctionURLStack(s *stack, root, id, what string, p *problems) {
	props, _ := dig(s.resources[id], "Properties").(map[string]any)
	loc, _ := props["Location"].(string)
	if loc == "" {
		loc, _ = props["TemplateURL"].(string)
	}
	params, _ := props["Parameters"].(map[string]any)
	if loc == "" || filepath.IsAbs(loc) || strings.Contains(loc, "://") {
		p.add("%s: %s's template %q is not a path in the repository (sam deploy uploads it)", what, id, loc)
		return
	}
	child, err := loadTemplate(filepath.Join(root, loc))
	if err != nil {
		p.add("%s: %s: %v", what, id, err)
		return
	}
	childParams, _ := child.raw["Parameters"].(map[string]any)
	// The child parameters the function's name and ARN arrive in.
	nameParam, arnParam := "", ""
	for k, v := range params {
		if _, ok := childParams[k]; !ok {
			p.add("%s: %s passes %s, which %s does not declare", what, id, k, loc)
		}
		switch {
		case refsTo(v, apiFunction, ""):
			nameParam = k
		case refsTo(v, apiFunction, "Arn"):
			arnParam = k
		}
	}
	for k, v := range childParams {
		if _, ok := params[k]; !ok && dig(v, "Default") == nil {
			p.add("%s: %s does not pass %s's parameter %s", what, id, loc, k)
		}
	}
	if nameParam == "" || arnParam == "" {
		p.add("%s: %s must pass !Ref %s and !GetAtt %s.Arn (got %v)", what, id, apiFunction, apiFunction, params)
		return
	}
	var sch *samSchema
	if sch, err = loadSchema(); err != nil {
		p.add("%v", err)
		return
	}
	sch.checkSchema(child, p)
	if child.parseErr != nil {
		p.add("%s: goformation cannot parse %s: %v", what, loc, child.parseErr)
	}
	cs, err := child.stack(nil)
	if err != nil {
		p.add("%s: %s: %v", what, loc, err)
		return
	}
	cs.checkRefs(child, loc, p)
	var url, public, invoke []string
	for rid, r := range cs.resources {
		rp, _ := r["Properties"].(map[string]any)
		switch r["Type"] {
		case "AWS::Lambda::Url":
			if refsTo(rp["TargetFunctionArn"], arnParam, "") && rp["AuthType"] == "NONE" && rp["InvokeMode"] == "BUFFERED" && rp["Qualifier"] == nil {
				url = append(url, rid)
			} else {
				p.add("%s: %s %s: want TargetFunctionArn !Ref %s, AuthType NONE (Airlock authenticates), InvokeMode BUFFERED; got %v", what, loc, rid, arnParam, rp)
			}
		case "AWS::Lambda::Permission":
			fnOK := refsTo(rp["FunctionName"], nameParam, "") || refsTo(rp["FunctionName"], arnParam, "")
			switch {
			case fnOK && rp["Action"] == "lambda:InvokeFunctionUrl" && rp["Principal"] == "*" && rp["FunctionUrlAuthType"] == "NONE" && rp["SourceArn"] == nil:
				public = append(public, rid)
			case fnOK && rp["Action"] == "lambda:InvokeFunction" && rp["Principal"] == "*" && rp["InvokedViaFunctionUrl"] == true:
				invoke = append(invoke, rid)
			default:
				p.add("%s: %s %s is neither lambda:InvokeFunctionUrl for * with FunctionUrlAuthType NONE nor lambda:InvokeFunction for * with InvokedViaFunctionUrl true: %v", what, loc, rid, rp)
			}
		default:
			p.add("%s: %s has %s (%v): only the URL and its permissions belong there", what, loc, rid, r["Type"])
		}
	}
	if len(url) != 1 {
		p.add("%s: %s: want one AWS::Lambda::Url of the function, got %v", what, loc, url)
	}
	if len(public) != 1 {
		p.add("%s: %s: want one AWS::Lambda::Permission with lambda:InvokeFunctionUrl, Principal *, FunctionUrlAuthType NONE; got %v", what, loc, public)
	}
	if len(invoke) != 1 {
		p.add("%s: %s: want one AWS::Lambda::Permission with lambda:InvokeFunction, Principal *, InvokedViaFunctionUrl true (new function URLs need both since October 2025); got %v", what, loc, invoke)
	}
	outs, _ := child.raw["Outputs"].(map[string]any)
	if host := dig(outs, "Host", "Value"); len(url) == 1 && !refsTo(host, url[0], "FunctionUrl") {
		p.add("%s: %s: output Host %v is not derived from !GetAtt %s.FunctionUrl", what, loc, host, url[0])
	}
}

// frontDoors returns FrontDoor's AllowedValues.
func frontDoors(t *tmpl) []string {
	return stringList(dig(t.raw, "Parameters", "FrontDoor", "AllowedValues"))
}

// variant writes template.yaml with FrontDoor's default set to door (what
// cfn-lint and goformation, which use defaults, then check).
func variant(t *testing.T, doc, door string) string {
	t.Helper()
	const def = "  FrontDoor:\n    Type: String\n    Default: HttpApi\n"
	if !strings.Contains(doc, def) {
		t.Fatalf("template.yaml no longer declares %q: update this test", def)
	}
	path := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(doc, def, strings.Replace(def, "HttpApi", door, 1), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cfnLint runs cfn-lint on the files when it is installed.
func cfnLint(t *testing.T, files ...string) {
	t.Helper()
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Logf("cfn-lint not installed (pip install cfn-lint): %v not linted", files)
		return
	}
	out, err := exec.Command(bin, append([]string{"--"}, files...)...).CombinedOutput()
	if err != nil {
		t.Errorf("cfn-lint %v: %v\n%s", files, err, out)
	}
}

// TestFrontDoors: each FrontDoor value gives a template that passes every
// check (goformation schema, env, IAM, build targets), cfn-lint (when
// installed), and has exactly its front door's resources.
func TestFrontDoors(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := loadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if doors := frontDoors(tm); !slices.Equal(doors, []string{"HttpApi", "FunctionUrl"}) || dig(tm.raw, "Parameters", "FrontDoor", "Default") != "HttpApi" {
		t.Fatalf("FrontDoor: AllowedValues %v, Default %v; want [HttpApi FunctionUrl], HttpApi", doors, dig(tm.raw, "Parameters", "FrontDoor", "Default"))
	}
	for _, door := range frontDoors(tm) {
		t.Run(door, func(t *testing.T) {
			path := variant(t, string(orig), door)
			p := check(t, root, path, filepath.Join(root, "localdev", "sam-env.json"), false)
			vt, err := loadTemplate(path)
			if err != nil {
				t.Fatal(err)
			}
			checkFrontDoor(vt, root, door, "", &p)
			if door == "HttpApi" {
				checkFrontDoor(vt, root, door, "registry.example.com", &p)
			}
			for _, msg := range p {
				t.Error(msg)
			}
			lint := []string{path}
			if door == "FunctionUrl" {
				lint = append(lint, filepath.Join(root, "infra", "function-url.yaml"))
			}
			cfnLint(t, lint...)
		})
	}
}

// TestDomainNeedsHTTPAPI: with FrontDoor FunctionUrl a DomainName creates
// nothing, and a rule refuses the stack (a function URL has no custom domain).
func TestDomainNeedsHTTPAPI(t *testing.T) {
	root := repoRoot(t)
	tm, err := loadTemplate(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	checkFrontDoor(tm, root, "FunctionUrl", "registry.example.com", &p)
	for _, msg := range p {
		t.Error(msg)
	}
	rules, _ := tm.raw["Rules"].(map[string]any)
	found := false
	for _, r := range rules {
		cond := dig(r, "RuleCondition")
		asserts, _ := dig(r, "Assertions").([]any)
		if refsTo(cond, "FrontDoor", "") && len(asserts) > 0 && refsTo(asserts, "DomainName", "") {
			found = true
		}
	}
	if !found {
		t.Error("no rule refuses DomainName with FrontDoor FunctionUrl")
	}
}

// TestBrokenFrontDoors: each deliberate break of a front door is caught.
func TestBrokenFrontDoors(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	origURL, err := os.ReadFile(filepath.Join(root, "infra", "function-url.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		old, new string // in template.yaml
		urlOld   string // in infra/function-url.yaml
		urlNew   string
		door     string
		want     []string
	}{
		{name: "API Gateway resource without condition", door: "FunctionUrl",
			old: "  HttpApiIntegration:\n    Type: AWS::ApiGatewayV2::Integration\n    Condition: UseHttpApi\n",
			new: "  HttpApiIntegration:\n    Type: AWS::ApiGatewayV2::Integration\n",
			want: []string{"FrontDoor=FunctionUrl: API Gateway resources exist: HttpApiIntegration (AWS::ApiGatewayV2::Integration)",
				"resource HttpApiIntegration references HttpApi, which does not exist then"}},
		{name: "function URL with the HTTP API", door: "HttpApi",
			old: "    Type: AWS::Serverless::Application\n    Condition: UseFunctionUrl\n", new: "    Type: AWS::Serverless::Application\n",
			want: []string{"FrontDoor=HttpApi: a function URL exists"}},
		{name: "fixed timeout", door: "FunctionUrl",
			old: "      Timeout: !If [UseFunctionUrl, !Ref FunctionUrlTimeout, 29]\n", new: "      Timeout: 29\n",
			want: []string{"FrontDoor=FunctionUrl: ApiFunction's Timeout is 29, want !Ref FunctionUrlTimeout"}},
		{name: "payload 1.0", door: "HttpApi", old: "      PayloadFormatVersion: \"2.0\"\n", new: "      PayloadFormatVersion: \"1.0\"\n",
			want: []string{"no AWS::ApiGatewayV2::Integration of HttpApi", "no $default AWS::ApiGatewayV2::Route"}},
		{name: "no API Gateway permission", door: "HttpApi",
			old: "      Principal: apigateway.amazonaws.com\n", new: "      Principal: lambda.amazonaws.com\n",
			want: []string{"want one AWS::Lambda::Permission letting apigateway.amazonaws.com invoke ApiFunction"}},
		{name: "IAM auth on the URL", door: "FunctionUrl", urlOld: "      AuthType: NONE\n", urlNew: "      AuthType: AWS_IAM\n",
			want: []string{"want TargetFunctionArn !Ref FunctionArn, AuthType NONE"}},
		{name: "no InvokeFunction permission", door: "FunctionUrl", urlOld: "      InvokedViaFunctionUrl: true\n", urlNew: "",
			want: []string{"is neither lambda:InvokeFunctionUrl", "want one AWS::Lambda::Permission with lambda:InvokeFunction, Principal *, InvokedViaFunctionUrl true"}},
		{name: "URL permission for IAM", door: "FunctionUrl", urlOld: "      FunctionUrlAuthType: NONE\n", urlNew: "      FunctionUrlAuthType: AWS_IAM\n",
			want: []string{"want one AWS::Lambda::Permission with lambda:InvokeFunctionUrl, Principal *, FunctionUrlAuthType NONE"}},
		{name: "UI address without /ui/", door: "FunctionUrl",
			old: `      - !Sub "https://${FunctionUrlFrontDoor.Outputs.Host}/ui/"` + "\n", new: `      - !Sub "https://${FunctionUrlFrontDoor.Outputs.Host}/"` + "\n",
			want: []string{"FrontDoor=FunctionUrl: UiUrl map[Fn::Sub:https://${FunctionUrlFrontDoor.Outputs.Host}/] is not RegistryUrl"}},
		{name: "no UI address", door: "HttpApi", old: "  UiUrl:\n", new: "  UiUrlOld:\n",
			want: []string{"FrontDoor=HttpApi: no UiUrl output"}},
		{name: "unknown property in the nested template", door: "FunctionUrl", urlOld: "      InvokeMode: BUFFERED\n", urlNew: "      InvokeMode: BUFFERED\n      Streaming: true\n",
			want: []string{`Resources.Url.Properties: unknown property "Streaming"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			doc, urlDoc := string(orig), string(origURL)
			if tc.old != "" {
				if !strings.Contains(doc, tc.old) {
					t.Fatalf("template.yaml no longer contains %q: update this case", tc.old)
				}
				doc = strings.Replace(doc, tc.old, tc.new, 1)
			}
			if tc.urlOld != "" {
				if !strings.Contains(urlDoc, tc.urlOld) {
					t.Fatalf("infra/function-url.yaml no longer contains %q: update this case", tc.urlOld)
				}
				urlDoc = strings.Replace(urlDoc, tc.urlOld, tc.urlNew, 1)
			}
			// The nested template's Location is relative to the root.
			if err := os.MkdirAll(filepath.Join(dir, "infra"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "infra", "function-url.yaml"), []byte(urlDoc), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "template.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			tm, err := loadTemplate(path)
			if err != nil {
				t.Fatal(err)
			}
			var p problems
			checkFrontDoor(tm, dir, tc.door, "", &p)
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
