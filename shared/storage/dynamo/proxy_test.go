package dynamo_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
)

// TestProxyCallCounts pins every storage.ProxyMetadata method to one
// DynamoDB call (ListMarkers: one Query page for a small group).
func TestProxyCallCounts(t *testing.T) {
	db, table := testDynamo(t)
	counter := &countingClient{inner: awshttp.NewBuildableClient()}
	db = dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.HTTPClient = counter
		o.RetryMaxAttempts = 1
	})
	s := dynamo.New(db, table)
	ctx := t.Context()
	img := storage.Image{Repo: "hub", Name: "library/nginx"}
	m := storage.Marker{Group: "lease", Key: "k", Value: "v", Until: time.Now().Add(time.Minute)}
	cases := []struct {
		what string
		fn   func() error
	}{
		{"PutTagCheck", func() error {
			return s.PutTagCheck(ctx, img, "latest", storage.TagCheck{Digest: digest.FromString("m"), Checked: time.Now()})
		}},
		{"GetTagCheck", func() error { _, err := s.GetTagCheck(ctx, img, "latest"); return err }},
		{"PutMarker", func() error { return s.PutMarker(ctx, m) }},
		{"GetMarker", func() error { _, err := s.GetMarker(ctx, m.Group, m.Key); return err }},
		{"AcquireMarker (renew)", func() error { return s.AcquireMarker(ctx, m) }},
		{"ListMarkers", func() error { _, err := s.ListMarkers(ctx, m.Group, 0); return err }},
		{"ListMarkers n=5", func() error { _, err := s.ListMarkers(ctx, m.Group, 5); return err }},
		{"ReleaseMarker", func() error { return s.ReleaseMarker(ctx, m.Group, m.Key, m.Value) }},
		{"DeleteMarker", func() error { return s.DeleteMarker(ctx, m.Group, m.Key) }},
	}
	for _, c := range cases {
		if got := counter.calls(t, c.what, c.fn); got != 1 {
			t.Errorf("%s made %d DynamoDB calls, want 1", c.what, got)
		}
	}
}

// TestProxyItemShapes checks the stored attributes: a tag check's checked is
// a Number of epoch ms that PutTag removes; a marker's until is a Number of
// epoch ms and its expiresAt (the TTL) a Number of epoch seconds rounded up.
func TestProxyItemShapes(t *testing.T) {
	db, table := testDynamo(t)
	s := dynamo.New(db, table)
	ctx := t.Context()
	get := func(pk, sk string) map[string]types.AttributeValue {
		t.Helper()
		res, err := db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(table),
			Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil || res.Item == nil {
			t.Fatalf("GetItem %s %s: %v, item %v", pk, sk, err, res.Item)
		}
		return res.Item
	}
	number := func(item map[string]types.AttributeValue, name string, want int64) {
		t.Helper()
		n, ok := item[name].(*types.AttributeValueMemberN)
		if !ok || n.Value != strconv.FormatInt(want, 10) {
			t.Errorf("%s = %#v, want the Number %d", name, item[name], want)
		}
	}
	img := storage.Image{Repo: "hub", Name: "library/nginx"}
	checked := time.UnixMilli(1_777_777_777_123)
	if err := s.PutTagCheck(ctx, img, "latest", storage.TagCheck{Digest: digest.FromString("m"), Checked: checked}); err != nil {
		t.Fatal(err)
	}
	number(get("IMG#hub/library/nginx", "T#latest"), "checked", checked.UnixMilli())
	if err := s.PutTag(ctx, img, "latest", digest.FromString("m"), storage.TagOverwrite); err != nil {
		t.Fatal(err)
	}
	if v, ok := get("IMG#hub/library/nginx", "T#latest")["checked"]; ok {
		t.Errorf("after PutTag the tag item still has checked = %#v", v)
	}

	until := time.Now().Add(time.Hour).Truncate(time.Second).Add(1500 * time.Microsecond)
	if err := s.PutMarker(ctx, storage.Marker{Group: "neg", Key: "k", Value: "v", Count: 2, Until: until}); err != nil {
		t.Fatal(err)
	}
	item := get("MARK#neg", "k")
	number(item, "until", until.UnixMilli())
	number(item, "expiresAt", until.Unix()+1)
	number(item, "count", 2)
	if v, ok := item["value"].(*types.AttributeValueMemberS); !ok || v.Value != "v" {
		t.Errorf("value = %#v, want the String v", item["value"])
	}
}
