// Package cloud is the AWS glue of the Lambda functions that is not the
// registry itself: building the configuration, stores and logger from the
// environment at cold start (FromEnv, env.go), handing a proxy fill to the
// proxyfetch function (an asynchronous Lambda invoke) and resolving a
// proxy's passwordSecret or the admin password's parameter (Secrets
// Manager, or SSM Parameter Store for "ssm:<name>").
package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	ltypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/airlock-registry/airlock/shared/repo"
)

// Invoker is the Lambda API call Handoff makes.
type Invoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Handoff returns a repo.ProxyOptions.Handoff that invokes function
// asynchronously (InvocationType Event) with the fill job as its event.
func Handoff(c Invoker, function string) func(ctx context.Context, job repo.FillJob) error {
	return func(ctx context.Context, job repo.FillJob) error { return invokeAsync(ctx, c, function, job) }
}

// invokeAsync invokes function asynchronously with event as JSON.
func invokeAsync(ctx context.Context, c Invoker, function string, event any) error {
	payload, err := json.Marshal(event)
	if err != nil {
		return err
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(function),
		InvocationType: ltypes.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("invoke %s: %w", function, err)
	}
	return nil
}

// Secrets resolves passwordSecret references: "ssm:<parameter name>" is an
// SSM SecureString parameter; anything else a Secrets Manager secret (ARN or
// name) whose SecretString is the password, or a JSON object with a
// "password" field.
type Secrets struct {
	SM  *secretsmanager.Client
	SSM *ssm.Client
}

// Resolve returns the secret's value.
func (s Secrets) Resolve(ctx context.Context, ref string) (string, error) {
	if name, ok := strings.CutPrefix(ref, "ssm:"); ok {
		out, err := s.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
		if err != nil {
			return "", fmt.Errorf("SSM parameter %s: %w", name, err)
		}
		return aws.ToString(out.Parameter.Value), nil
	}
	out, err := s.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref)})
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", ref, err)
	}
	v := aws.ToString(out.SecretString)
	var doc struct {
		Password string `json:"password"`
	}
	if strings.HasPrefix(strings.TrimSpace(v), "{") && json.Unmarshal([]byte(v), &doc) == nil && doc.Password != "" {
		return doc.Password, nil
	}
	return v, nil
}
