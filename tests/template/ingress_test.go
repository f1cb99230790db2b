package template_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The UploadIngress parameter (README, Upload ingress): with fargate the
// stack runs shared/cmd/ingress on ECS Fargate behind an ALB and the api
// function's AIRLOCK_INGRESS_URL names it; with none (the default) nothing
// of it exists.

// ingressParams are the parameter values of a fargate ingress (the rule
// IngressNeedsParameters requires each).
var ingressParams = map[string]string{
	"UploadIngress":         "fargate",
	"IngressImage":          "123456789012.dkr.ecr.us-east-1.amazonaws.com/airlock-ingress:1",
	"IngressDomain":         "push.registry.example.com",
	"IngressCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0123",
	"IngressVpcId":          "vpc-0123456789abcdef0",
	"IngressSubnets":        "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
}

// ingressPkg is the ingress's main package.
const ingressPkg = "./shared/cmd/ingress"

// ingressResources are the ingress's resources, by logical id.
var ingressResources = map[string]string{
	"IngressLogGroup":                  "AWS::Logs::LogGroup",
	"IngressCluster":                   "AWS::ECS::Cluster",
	"IngressTaskRole":                  "AWS::IAM::Role",
	"IngressExecutionRole":             "AWS::IAM::Role",
	"IngressTaskDefinition":            "AWS::ECS::TaskDefinition",
	"IngressLoadBalancerSecurityGroup": "AWS::EC2::SecurityGroup",
	"IngressTaskSecurityGroup":         "AWS::EC2::SecurityGroup",
	"IngressLoadBalancer":              "AWS::ElasticLoadBalancingV2::LoadBalancer",
	"IngressTargetGroup":               "AWS::ElasticLoadBalancingV2::TargetGroup",
	"IngressListener":                  "AWS::ElasticLoadBalancingV2::Listener",
	"IngressService":                   "AWS::ECS::Service",
	"IngressScalableTarget":            "AWS::ApplicationAutoScaling::ScalableTarget",
	"IngressScalingPolicy":             "AWS::ApplicationAutoScaling::ScalingPolicy",
}

// ingressTypes are the resource types nothing but the ingress uses.
var ingressTypes = []string{"AWS::ECS::", "AWS::ElasticLoadBalancingV2::", "AWS::ApplicationAutoScaling::", "AWS::EC2::", "AWS::IAM::Role", "AWS::Logs::"}

// checkIngress checks the stack with UploadIngress off (none) or on
// (fargate, with ingressParams); root is where the code is scanned.
func checkIngress(t *tmpl, root string, on bool, p *problems) {
	what, params := "UploadIngress=none", map[string]string{}
	if on {
		what, params = "UploadIngress=fargate", ingressParams
	}
	s, err := t.stack(params)
	if err != nil {
		p.add("%s: %v", what, err)
		return
	}
	s.checkRefs(t, what, p)
	urlVar := dig(s.resources[apiFunction], "Properties", "Environment", "Variables", "AIRLOCK_INGRESS_URL")
	if !on {
		if ids := s.ofType(ingressTypes...); len(ids) > 0 {
			p.add("%s: ingress resources exist: %s", what, strings.Join(ids, ", "))
		}
		if urlVar != "" {
			p.add("%s: %s's AIRLOCK_INGRESS_URL is %v, want \"\" (no ingress: relative upload Locations)", what, apiFunction, urlVar)
		}
		for id := range s.outputs {
			if strings.HasPrefix(id, "Ingress") {
				p.add("%s: output %s exists", what, id)
			}
		}
		return
	}
	for id, typ := range ingressResources {
		if got, _ := s.resources[id]["Type"].(string); got != typ {
			p.add("%s: no %s (%s)", what, id, typ)
		}
	}
	if sub, _ := dig(urlVar, "Fn::Sub").(string); sub != "https://${IngressDomain}" {
		p.add("%s: %s's AIRLOCK_INGRESS_URL is %v, want !Sub https://${IngressDomain}", what, apiFunction, urlVar)
	}
	if sub, _ := dig(s.outputs["IngressUrl"], "Value", "Fn::Sub").(string); sub != "https://${IngressDomain}" {
		p.add("%s: output IngressUrl is %v, want !Sub https://${IngressDomain}", what, dig(s.outputs["IngressUrl"], "Value"))
	}
	if v := dig(s.outputs["IngressDomainTarget"], "Value"); !refsTo(v, "IngressLoadBalancer", "DNSName") {
		p.add("%s: output IngressDomainTarget is %v, want !GetAtt IngressLoadBalancer.DNSName", what, v)
	}

	td := dig(s.resources["IngressTaskDefinition"], "Properties")
	if dig(td, "Cpu") != "256" || dig(td, "Memory") != "512" || !slices.Equal(stringList(dig(td, "RequiresCompatibilities")), []string{"FARGATE"}) || dig(td, "NetworkMode") != "awsvpc" {
		p.add("%s: IngressTaskDefinition is Cpu %v Memory %v %v %v, want 256 (0.25 vCPU), 512 (0.5 GB), [FARGATE], awsvpc",
			what, dig(td, "Cpu"), dig(td, "Memory"), dig(td, "RequiresCompatibilities"), dig(td, "NetworkMode"))
	}
	if !refsTo(dig(td, "TaskRoleArn"), "IngressTaskRole", "Arn") || !refsTo(dig(td, "ExecutionRoleArn"), "IngressExecutionRole", "Arn") {
		p.add("%s: IngressTaskDefinition's roles are %v / %v, want IngressTaskRole / IngressExecutionRole", what, dig(td, "TaskRoleArn"), dig(td, "ExecutionRoleArn"))
	}
	cs, _ := dig(td, "ContainerDefinitions").([]any)
	if len(cs) != 1 {
		p.add("%s: IngressTaskDefinition has %d containers, want 1", what, len(cs))
		return
	}
	c := cs[0]
	if !refsTo(dig(c, "Image"), "IngressImage", "") {
		p.add("%s: the container's Image is %v, want !Ref IngressImage", what, dig(c, "Image"))
	}
	if !refsTo(dig(c, "LogConfiguration", "Options"), "IngressLogGroup", "") {
		p.add("%s: the container does not log to IngressLogGroup", what)
	}
	ports, _ := dig(c, "PortMappings").([]any)
	if len(ports) != 1 || fmt.Sprint(dig(ports[0], "ContainerPort")) != "8080" {
		p.add("%s: the container's PortMappings %v, want 8080 (shared/cmd/ingress's -addr)", what, dig(c, "PortMappings"))
	}
	env := map[string]any{}
	list, _ := dig(c, "Environment").([]any)
	for _, e := range list {
		name, _ := dig(e, "Name").(string)
		env[name] = dig(e, "Value")
	}

	svc := dig(s.resources["IngressService"], "Properties")
	if fmt.Sprint(dig(svc, "DesiredCount")) != "1" || dig(svc, "LaunchType") != "FARGATE" || !refsTo(dig(svc, "TaskDefinition"), "IngressTaskDefinition", "") {
		p.add("%s: IngressService: DesiredCount %v, LaunchType %v, TaskDefinition %v; want 1, FARGATE, IngressTaskDefinition", what, dig(svc, "DesiredCount"), dig(svc, "LaunchType"), dig(svc, "TaskDefinition"))
	}
	lbs, _ := dig(svc, "LoadBalancers").([]any)
	if len(lbs) != 1 || !refsTo(dig(lbs[0], "TargetGroupArn"), "IngressTargetGroup", "") || fmt.Sprint(dig(lbs[0], "ContainerPort")) != "8080" {
		p.add("%s: IngressService's LoadBalancers %v, want IngressTargetGroup on port 8080", what, dig(svc, "LoadBalancers"))
	}
	if !refsTo(dig(svc, "NetworkConfiguration", "AwsvpcConfiguration", "Subnets"), "IngressSubnets", "") {
		p.add("%s: IngressService's subnets are not IngressSubnets", what)
	}

	tg := dig(s.resources["IngressTargetGroup"], "Properties")
	if fmt.Sprint(dig(tg, "Port")) != "8080" || dig(tg, "TargetType") != "ip" || dig(tg, "HealthCheckPath") != "/v2/" ||
		!strings.Contains(fmt.Sprint(dig(tg, "Matcher", "HttpCode")), "401") {
		p.add("%s: IngressTargetGroup: Port %v, TargetType %v, HealthCheckPath %v, Matcher %v; want 8080, ip, /v2/, with 401 (auth on)",
			what, dig(tg, "Port"), dig(tg, "TargetType"), dig(tg, "HealthCheckPath"), dig(tg, "Matcher"))
	}
	ln := dig(s.resources["IngressListener"], "Properties")
	if dig(ln, "Protocol") != "HTTPS" || fmt.Sprint(dig(ln, "Port")) != "443" || !refsTo(dig(ln, "Certificates"), "IngressCertificateArn", "") ||
		!refsTo(dig(ln, "DefaultActions"), "IngressTargetGroup", "") || !refsTo(dig(ln, "LoadBalancerArn"), "IngressLoadBalancer", "") {
		p.add("%s: IngressListener must be HTTPS on 443 with IngressCertificateArn, forwarding IngressLoadBalancer to IngressTargetGroup: %v", what, ln)
	}
	for _, rule := range sgRules(s.resources["IngressTaskSecurityGroup"]) {
		if !refsTo(dig(rule, "SourceSecurityGroupId"), "IngressLoadBalancerSecurityGroup", "") || fmt.Sprint(dig(rule, "FromPort")) != "8080" {
			p.add("%s: IngressTaskSecurityGroup admits %v: want port 8080 from IngressLoadBalancerSecurityGroup only", what, rule)
		}
	}
	for _, rule := range sgRules(s.resources["IngressLoadBalancerSecurityGroup"]) {
		if fmt.Sprint(dig(rule, "FromPort")) != "443" || fmt.Sprint(dig(rule, "ToPort")) != "443" {
			p.add("%s: IngressLoadBalancerSecurityGroup admits %v: want HTTPS (443) only", what, rule)
		}
	}

	st := dig(s.resources["IngressScalableTarget"], "Properties")
	if fmt.Sprint(dig(st, "MinCapacity")) != "1" || !refsTo(dig(st, "MaxCapacity"), "IngressMaxTasks", "") ||
		!refsTo(dig(st, "ResourceId"), "IngressService", "Name") || !refsTo(dig(st, "ResourceId"), "IngressCluster", "") {
		p.add("%s: IngressScalableTarget: %v; want 1..IngressMaxTasks tasks of service/IngressCluster/IngressService", what, st)
	}
	sp := dig(s.resources["IngressScalingPolicy"], "Properties")
	cfg := dig(sp, "TargetTrackingScalingPolicyConfiguration", "PredefinedMetricSpecification")
	label := dig(cfg, "ResourceLabel")
	if dig(sp, "PolicyType") != "TargetTrackingScaling" || dig(cfg, "PredefinedMetricType") != "ALBRequestCountPerTarget" ||
		!refsTo(label, "IngressLoadBalancer", "LoadBalancerFullName") || !refsTo(label, "IngressTargetGroup", "TargetGroupFullName") ||
		!refsTo(dig(sp, "ScalingTargetId"), "IngressScalableTarget", "") {
		p.add("%s: IngressScalingPolicy must track ALBRequestCountPerTarget of IngressLoadBalancer/IngressTargetGroup on IngressScalableTarget: %v", what, sp)
	}

	// The task role: what the ingress's code calls, exactly (least privilege).
	role := dig(s.resources["IngressTaskRole"], "Properties")
	if !strings.Contains(fmt.Sprint(dig(role, "AssumeRolePolicyDocument")), "ecs-tasks.amazonaws.com") {
		p.add("%s: IngressTaskRole is not assumed by ecs-tasks.amazonaws.com", what)
	}
	var docs []any
	pols, _ := dig(role, "Policies").([]any)
	for _, pol := range pols {
		docs = append(docs, dig(pol, "PolicyDocument"))
	}
	if mp := dig(role, "ManagedPolicyArns"); mp != nil {
		p.add("%s: IngressTaskRole has managed policies %v: inline statements only (least privilege)", what, mp)
	}
	f := fn{id: "IngressTaskRole", env: env, policies: docs}
	cu, err := scanCode(root, ingressPkg)
	if err != nil {
		p.add("%s: scan %s: %v", what, ingressPkg, err)
		return
	}
	checkEnv(f, ingressPkg, cu, p)
	checkIAM(f, t, cu, p)
	checkOnlyNeeded(f, cu, p)
}

// sgRules returns a security group's ingress rules.
func sgRules(sg map[string]any) []any {
	rules, _ := dig(sg, "Properties", "SecurityGroupIngress").([]any)
	return rules
}

// checkOnlyNeeded: every action f's statements allow is one its code calls
// (checkNoExtraGrants), and no statement names a resource outside the
// table, the bucket and the proxies' secrets.
func checkOnlyNeeded(f fn, cu codeUse, p *problems) {
	checkNoExtraGrants(f, cu, ingressPkg, p)
	for _, pol := range f.policies {
		sts, _ := dig(pol, "Statement").([]any)
		for _, st := range sts {
			for _, r := range stringList(dig(st, "Resource")) {
				p.add("%s: statement %v allows %q: only the table, the bucket and the proxies' secrets", f.id, dig(st, "Sid"), r)
			}
			for _, r := range refs(dig(st, "Resource")) {
				if r.id != "RegistryTable" && r.id != "BlobBucket" && r.id != "ProxySecretArns" {
					p.add("%s: statement %v names %s: only the table, the bucket and the proxies' secrets", f.id, dig(st, "Sid"), r.id)
				}
			}
		}
	}
}

// TestIngressStack: without UploadIngress no ingress resource exists and the
// api function's AIRLOCK_INGRESS_URL is empty; with fargate every ingress
// resource exists, wired as checkIngress says, the task role allows what
// the ingress's code calls and nothing more, and the api function names the
// ingress. A rule requires the ingress's parameters; both variants pass
// cfn-lint (when installed).
func TestIngressStack(t *testing.T) {
	root := repoRoot(t)
	path := filepath.Join(root, "template.yaml")
	tm, err := loadTemplate(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := dig(tm.raw, "Parameters", "UploadIngress", "Default"); d != "none" {
		t.Errorf("UploadIngress defaults to %v, want none (the serverless path costs nothing idle)", d)
	}
	for _, on := range []bool{false, true} {
		var p problems
		checkIngress(tm, root, on, &p)
		for _, msg := range p {
			t.Error(msg)
		}
	}

	rules, _ := tm.raw["Rules"].(map[string]any)
	found := false
	for _, r := range rules {
		asserts, _ := dig(r, "Assertions").([]any)
		if !refsTo(dig(r, "RuleCondition"), "UploadIngress", "") {
			continue
		}
		found = true
		for _, param := range []string{"IngressImage", "IngressDomain", "IngressCertificateArn", "IngressVpcId", "IngressSubnets"} {
			if !refsTo(asserts, param, "") {
				t.Errorf("rule on UploadIngress does not require %s", param)
			}
		}
	}
	if !found {
		t.Error("no rule requires the ingress's parameters with UploadIngress fargate")
	}

	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const def = "    Default: none\n    AllowedValues: [none, fargate]\n"
	if !strings.Contains(string(orig), def) {
		t.Fatalf("template.yaml no longer declares %q: update this test", def)
	}
	on := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(on, []byte(strings.Replace(string(orig), def, strings.Replace(def, "Default: none", "Default: fargate", 1), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfnLint(t, path, on)
}

// TestBrokenIngress: each deliberate break of the ingress is caught.
func TestBrokenIngress(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		old, new string
		on       bool
		want     []string
	}{
		{name: "resource without the condition", old: "  IngressCluster:\n    Type: AWS::ECS::Cluster\n    Condition: UseIngress\n",
			new: "  IngressCluster:\n    Type: AWS::ECS::Cluster\n", want: []string{"UploadIngress=none: ingress resources exist: IngressCluster (AWS::ECS::Cluster)"}},
		{name: "ingress URL without the condition", old: `AIRLOCK_INGRESS_URL: !If [UseIngress, !Sub "https://${IngressDomain}", ""]`,
			new: `AIRLOCK_INGRESS_URL: !Sub "https://${IngressDomain}"`, want: []string{"UploadIngress=none: ApiFunction's AIRLOCK_INGRESS_URL is map[Fn::Sub:https://${IngressDomain}], want \"\""}},
		{name: "an action the code never calls", on: true, old: "                  - dynamodb:GetItem\n", new: "                  - dynamodb:GetItem\n                  - dynamodb:DescribeTable\n",
			want: []string{"IngressTaskRole: grants dynamodb:DescribeTable on RegistryTable (resource), which the code of ./shared/cmd/ingress never calls"}},
		{name: "the purge's scan", on: true, old: "                  - dynamodb:GetItem\n", new: "                  - dynamodb:GetItem\n                  - dynamodb:Scan\n",
			want: []string{"IngressTaskRole: its policy allows dynamodb:Scan on RegistryTable, which only PurgeFunction may have"}},
		{name: "a missing action", on: true, old: "                  - s3:DeleteObject\n", new: "",
			want: []string{"IngressTaskRole: the code calls s3:DeleteObject", "on bucket BlobBucket but no policy statement allows it"}},
		{name: "a star resource", on: true, old: "                Resource: !GetAtt RegistryTable.Arn\n", new: "                Resource: \"*\"\n",
			want: []string{`IngressTaskRole: statement RegistryTableItems allows "*"`, "IngressTaskRole: the code calls dynamodb:GetItem"}},
		{name: "a variable the code reads is missing", on: true, old: "            - {Name: AIRLOCK_TABLE, Value: !Ref RegistryTable}\n", new: "",
			want: []string{"IngressTaskRole: the code reads AIRLOCK_TABLE ("}},
		{name: "tasks open to the world", on: true, old: "          SourceSecurityGroupId: !Ref IngressLoadBalancerSecurityGroup\n", new: "          CidrIp: 0.0.0.0/0\n",
			want: []string{"IngressTaskSecurityGroup admits", "want port 8080 from IngressLoadBalancerSecurityGroup only"}},
		{name: "bigger task", on: true, old: "      Memory: \"512\"\n", new: "      Memory: \"2048\"\n",
			want: []string{"IngressTaskDefinition is Cpu 256 Memory 2048"}},
		{name: "scaling on CPU", on: true, old: "          PredefinedMetricType: ALBRequestCountPerTarget\n", new: "          PredefinedMetricType: ECSServiceAverageCPUUtilization\n",
			want: []string{"IngressScalingPolicy must track ALBRequestCountPerTarget"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := string(orig)
			if !strings.Contains(doc, tc.old) {
				t.Fatalf("template.yaml no longer contains %q: update this case", tc.old)
			}
			path := filepath.Join(t.TempDir(), "template.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(doc, tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			tm, err := loadTemplate(path)
			if err != nil {
				t.Fatal(err)
			}
			var p problems
			checkIngress(tm, root, tc.on, &p)
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
