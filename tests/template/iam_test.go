package template_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// grants are the actions a function's inline policy statements allow, by
// resource logical id and level ("object": arn/*, "resource": the arn).
type grants map[string]map[string][]string

// policyGrants reads the function's Policies (inline documents; SAM policy
// templates and managed policy names are not understood and grant nothing
// here) and reports any "*" in an action.
func policyGrants(f fn, p *problems) grants {
	g := grants{}
	for _, pol := range f.policies {
		doc, ok := pol.(map[string]any)
		if !ok || doc["Statement"] == nil {
			continue
		}
		sts, ok := doc["Statement"].([]any)
		if !ok {
			sts = []any{doc["Statement"]}
		}
		for _, s := range sts {
			st, _ := s.(map[string]any)
			if st["Effect"] != "Allow" {
				continue
			}
			actions := stringList(st["Action"])
			for _, a := range actions {
				if strings.Contains(a, "*") {
					p.add("%s: policy statement %v allows %q: no \"*\" actions on data (least privilege)", f.id, st["Sid"], a)
				}
			}
			for _, r := range refs(st["Resource"]) {
				level := ""
				switch {
				case r.attr == "Arn" && r.suffix == "":
					level = "resource"
				case r.attr == "Arn" && r.suffix == "/*":
					level = "object"
				default:
					continue
				}
				if g[r.id] == nil {
					g[r.id] = map[string][]string{}
				}
				g[r.id][level] = append(g[r.id][level], actions...)
			}
		}
	}
	return g
}

// onlyFunction maps actions that code every function links (package
// dynamo) calls for one function alone to that function: no other function
// needs them, and none may be granted them. A table Scan reads every item;
// only the purge calls storage.Collector.Scan (TestScanOnlyInPurge).
var onlyFunction = map[string]string{"dynamodb:Scan": "PurgeFunction"}

// checkIAM requires, for every table and bucket the function's environment
// references, a statement allowing each action its code's SDK calls need
// (those of onlyFunction only for their function), and refuses grants of
// onlyFunction's actions to other functions.
func checkIAM(f fn, t *tmpl, cu codeUse, p *problems) {
	g := policyGrants(f, p)
	for id, levels := range g {
		for _, actions := range levels {
			for _, a := range actions {
				if owner, ok := onlyFunction[a]; ok && owner != f.id {
					p.add("%s: its policy allows %s on %s, which only %s may have", f.id, a, id, owner)
				}
			}
		}
	}
	touched := map[string][]string{} // service -> resource ids
	for _, v := range f.env {
		for _, r := range refs(v) {
			switch t.resourceType(r.id) {
			case "AWS::DynamoDB::Table":
				touched["dynamodb"] = append(touched["dynamodb"], r.id)
			case "AWS::S3::Bucket":
				touched["s3"] = append(touched["s3"], r.id)
			}
		}
	}
	kind := map[string]string{"dynamodb": "table", "s3": "bucket"}
	for _, svc := range []string{"dynamodb", "s3"} {
		uses := map[string][]use{"object": cu.objectActions[svc], "resource": cu.resourceActions[svc]}
		if len(uses["object"])+len(uses["resource"]) == 0 {
			continue
		}
		if len(touched[svc]) == 0 {
			first := append(uses["object"], uses["resource"]...)[0]
			p.add("%s: the code calls %s (%s) but the function's Environment references no %s resource", f.id, svc, first.where, kind[svc])
			continue
		}
		ids := slices.Compact(slices.Sorted(slices.Values(touched[svc])))
		for _, id := range ids {
			for _, level := range []string{"resource", "object"} {
				seen := map[string]bool{}
				for _, u := range uses[level] {
					if seen[u.name] || slices.Contains(g[id][level], u.name) {
						continue
					}
					if owner, ok := onlyFunction[u.name]; ok && owner != f.id {
						continue
					}
					seen[u.name] = true
					arn := "!GetAtt " + id + ".Arn"
					if level == "object" {
						arn = "!Sub ${" + id + ".Arn}/*"
					}
					p.add("%s: the code calls %s (%s) on %s %s but no policy statement allows it on %s",
						f.id, u.name, u.where, kind[svc], id, arn)
				}
			}
		}
	}
}

// checkNoExtraGrants: every DynamoDB and S3 action f's statements allow is
// one the code of pkg calls (sdkActions), at the level (the table or bucket
// itself, or its objects) it calls it.
func checkNoExtraGrants(f fn, cu codeUse, pkg string, p *problems) {
	needed := map[string]bool{}
	for level, calls := range map[string]map[string][]use{"resource": cu.resourceActions, "object": cu.objectActions} {
		for svc, uses := range calls {
			for _, u := range uses {
				needed[svc+"/"+level+"/"+u.name] = true
			}
		}
	}
	var extra []string
	for id, levels := range policyGrants(f, p) {
		for level, actions := range levels {
			for _, a := range actions {
				svc, _, _ := strings.Cut(a, ":")
				if _, known := sdkActions[svc]; known && !needed[svc+"/"+level+"/"+a] {
					extra = append(extra, fmt.Sprintf("%s on %s (%s)", a, id, level))
				}
			}
		}
	}
	sort.Strings(extra)
	for _, e := range slices.Compact(extra) {
		p.add("%s: grants %s, which the code of %s never calls (least privilege)", f.id, e, pkg)
	}
}
