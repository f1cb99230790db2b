// Command api is the Lambda function serving the whole /v2/ API behind API
// Gateway's HTTP API or a Lambda function URL (the same event, payload format
// 2.0; AIRLOCK_FRONT_DOOR says which, and so how long a request may take).
// Thin wiring only: the work is in shared/. Everything is built once, at cold
// start.
package main

import (
	"context"
	"log"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/registry"
)

func main() {
	ctx := context.Background()
	env, err := cloud.FromEnv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := requireAuth(env); err != nil {
		log.Fatal(err)
	}
	limit, err := maxBody()
	if err != nil {
		log.Fatal(err)
	}
	door, err := frontDoor()
	if err != nil {
		log.Fatal(err)
	}
	// Behind a function URL a proxy fill may take the request's whole
	// deadline (the function's timeout) instead of its fill budget.
	env.Proxy.FillUntilDeadline = door == frontDoorFunctionURL
	direct, err := directOptions(env, door)
	if err != nil {
		log.Fatal(err)
	}
	h, err := registry.New(registry.Deps{
		Meta:                 env.Meta,
		Blobs:                env.Blobs,
		Config:               env.Config,
		MaxBody:              limit,
		ManifestRedirectSize: responseBodyLimit,
		Logger:               env.Logger,
		Proxy:                env.Proxy,
		Direct:               direct,
		IngressURL:           ingressURL(),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := bootstrapAdmin(ctx, env, h); err != nil {
		log.Fatal(err)
	}
	lambda.Start(httpadapter.NewV2(logRequests(h, env.Logger, door, env.Proxy.FillUntilDeadline)).ProxyWithContext)
}

// directOptions: a direct-to-S3 upload too large to verify within the
// request (AIRLOCK_VERIFY_INLINE, verifyInline) is verified by the
// proxyfetch function (15 minutes; its event {"verify": job}); behind a
// function URL the request itself has up to 15 minutes, so more is verified
// inline.
func directOptions(env *cloud.Env, door string) (registry.DirectOptions, error) {
	o := registry.DirectOptions{}
	limit, err := verifyInline(door, env.Fetch != nil)
	if err != nil {
		return o, err
	}
	o.VerifyInline = limit
	if env.Fetch != nil {
		o.Handoff = func(ctx context.Context, job registry.VerifyJob) error {
			return env.Fetch(ctx, map[string]any{"verify": job})
		}
	}
	return o, nil
}
