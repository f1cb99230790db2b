// Command proxyfetch is the Lambda function that finishes proxy cache fills
// the api function handed off (asynchronous invoke, a repo.FillJob event)
// and, on its schedule, resumes every parked fill. Thin wiring only.
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/repo"
)

func main() {
	ctx := context.Background()
	env, err := cloud.FromEnv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	set, err := repo.New(ctx, env.Config, repo.Deps{Meta: env.Meta, Blobs: env.Blobs, Logger: env.Logger, Proxy: env.Proxy})
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(func(ctx context.Context, ev json.RawMessage) error { return set.FetchEvent(ctx, ev) })
}
