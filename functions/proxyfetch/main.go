// Command proxyfetch is the Lambda function of Airlock's long jobs: it
// finishes proxy cache fills the api function handed off (an asynchronous
// invoke with a repo.FillJob event), verifies direct-to-S3 uploads too large
// to verify within a request ({"verify": registry.VerifyJob}) and, on its
// schedule, resumes every parked fill. Thin wiring only.
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/registry"
)

func main() {
	ctx := context.Background()
	env, err := cloud.FromEnv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	h, err := registry.New(registry.Deps{Meta: env.Meta, Blobs: env.Blobs, Config: env.Config, Logger: env.Logger, Proxy: env.Proxy})
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(func(ctx context.Context, ev json.RawMessage) error {
		var v struct {
			Verify *registry.VerifyJob `json:"verify"`
		}
		if json.Unmarshal(ev, &v) == nil && v.Verify != nil {
			return h.Verify(ctx, *v.Verify)
		}
		return h.Repositories().FetchEvent(ctx, ev)
	})
}
