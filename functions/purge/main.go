// Command purge is the Lambda function of the scheduled purge (package
// purge): on its EventBridge schedule it runs every task for real; invoked
// by hand with {"task": "<name>", "dryRun": true} it runs one. Each report
// is logged as JSON, printed as CloudWatch embedded metrics and returned. Thin wiring only.
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/purge"
)

func main() {
	ctx := context.Background()
	cloud.LimitMemory() // the blob GC's pass state is held in memory
	env, err := cloud.FromEnv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	p, err := purge.New(purge.Deps{Meta: env.Meta, Blobs: env.Blobs, Config: env.Config, Logger: env.Logger, Metrics: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(func(ctx context.Context, ev json.RawMessage) ([]purge.Report, error) { return p.HandleEvent(ctx, ev) })
}
