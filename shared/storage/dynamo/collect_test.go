package dynamo_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
)

func isConflict(err error) bool { return errors.Is(err, storage.ErrConflict) }

func avS(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func avN(s string) types.AttributeValue { return &types.AttributeValueMemberN{Value: s} }

// TestPutBlobRecordVanishes: when the record PutBlob found (its create
// lost) is deleted before PutBlob touches it (a purge in between), PutBlob
// creates it once more instead of failing: three calls.
func TestPutBlobRecordVanishes(t *testing.T) {
	s, hc, plain, db, table := hookedStores(t)
	ctx := t.Context()
	d := digest.FromString("vanishing")
	if _, err := plain.PutBlob(ctx, storage.Blob{Digest: d, Size: 1, Key: "first"}); err != nil {
		t.Fatal(err)
	}
	var deleted atomic.Bool
	hc.setAfter(func(op string, _ []byte, res *http.Response) (*http.Response, error) {
		if op == "PutItem" && res.StatusCode == http.StatusBadRequest && !deleted.Swap(true) {
			_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table),
				Key: map[string]types.AttributeValue{"pk": avS("BLOB#" + d.String()), "sk": avS("BLOB")}})
			if err != nil {
				t.Errorf("delete the record in between: %v", err)
			}
		}
		return res, nil
	})
	var got storage.Blob
	n := hc.calls(t, "PutBlob", func() (err error) {
		got, err = s.PutBlob(ctx, storage.Blob{Digest: d, Size: 1, Key: "second"})
		return err
	})
	if !deleted.Load() {
		t.Fatal("the first PutItem did not fail: the record was not there")
	}
	if n != 3 {
		t.Errorf("PutBlob made %d calls, want 3 (create lost, touch found nothing, create)", n)
	}
	stored, err := plain.GetBlob(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "second" || stored.Key != "second" || stored.Touched.IsZero() {
		t.Fatalf("PutBlob returned key %q, stored %+v; want the new record (key second, touched)", got.Key, stored)
	}
}

// TestLegacyItems: items written before touch times were recorded (no
// touched, no at) read with zero times, are deleted by the conditional
// deletes on their created time (only when created before the cut's
// second), and get a touch time from the next writer that relies on them.
func TestLegacyItems(t *testing.T) {
	db, table := testDynamo(t)
	s := dynamo.New(db, table)
	ctx := t.Context()
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	img := storage.Image{Repo: "local", Name: "legacy"}
	d, old, m := digest.FromString("legacy"), digest.FromString("legacy old"), digest.FromString("legacy manifest")
	put(map[string]types.AttributeValue{"pk": avS("BLOB#" + d.String()), "sk": avS("BLOB"), "digest": avS(d.String()),
		"size": avN("3"), "created": avS("2026-05-04T03:02:01.5Z")})
	put(map[string]types.AttributeValue{"pk": avS("BLOB#" + old.String()), "sk": avS("BLOB"), "digest": avS(old.String()),
		"size": avN("3"), "created": avS("2020-01-01T00:00:00Z")})
	put(map[string]types.AttributeValue{"pk": avS("IMG#" + img.String()), "sk": avS("B#" + old.String()), "digest": avS(old.String()),
		"size": avN("3"), "created": avS("2020-01-01T00:00:00Z")})
	put(map[string]types.AttributeValue{"pk": avS("IMG#" + img.String()), "sk": avS("M#" + m.String()), "digest": avS(m.String()),
		"mediaType": avS("application/vnd.oci.image.manifest.v1+json"), "size": avN("2"), "body": &types.AttributeValueMemberB{Value: []byte("{}")},
		"created": avS("2020-01-01T00:00:00.25Z")})
	put(map[string]types.AttributeValue{"pk": avS("IMG#" + img.String()), "sk": avS("T#v1"), "digest": avS(m.String())})
	put(map[string]types.AttributeValue{"pk": avS("CATALOG"), "sk": avS(img.String()), "name": avS(img.String())})

	b, err := s.GetBlob(ctx, d)
	if err != nil || !b.Touched.IsZero() {
		t.Fatalf("GetBlob of a legacy record = %+v, %v; want Touched zero", b, err)
	}
	items, err := s.ListImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Tags) != 1 || !items.Tags[0].Updated.IsZero() || len(items.Manifests) != 1 || !items.Manifests[0].Touched.IsZero() ||
		len(items.Links) != 1 || !items.Links[0].Touched.IsZero() {
		t.Fatalf("ListImage of legacy items = %+v; want one tag, manifest and link, all with zero times", items)
	}

	created := time.Date(2026, 5, 4, 3, 2, 1, 500_000_000, time.UTC)
	for _, cut := range []time.Time{created.Add(-400 * time.Millisecond), created.Add(400 * time.Millisecond)} {
		if err := s.DeleteBlobIf(ctx, d, cut); !isConflict(err) {
			t.Fatalf("DeleteBlobIf(cut %v) of a record created at %v (same second) = %v, want ErrConflict", cut, created, err)
		}
	}
	if err := s.DeleteBlobIf(ctx, d, created.Add(-2*time.Second)); !isConflict(err) {
		t.Fatalf("DeleteBlobIf before the creation = %v, want ErrConflict", err)
	}
	if err := s.DeleteBlobIf(ctx, d, created.Truncate(time.Second).Add(time.Second)); err != nil {
		t.Fatalf("DeleteBlobIf(cut the next second) of a legacy record: %v", err)
	}

	// A writer relying on a legacy record touches it.
	before := time.Now().Truncate(time.Millisecond)
	if _, err := s.PutBlob(ctx, storage.Blob{Digest: old, Size: 3}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetBlob(ctx, old); err != nil || b.Touched.Before(before) {
		t.Fatalf("after PutBlob of a legacy record: %+v, %v; want touched now", b, err)
	}
	if err := s.DeleteBlobIf(ctx, old, before); !isConflict(err) {
		t.Fatalf("DeleteBlobIf of a record touched after the cut = %v, want ErrConflict", err)
	}

	now := time.Now()
	if err := s.DeleteLinkIf(ctx, img, old, now); err != nil {
		t.Fatalf("DeleteLinkIf of a legacy link: %v", err)
	}
	if err := s.DeleteManifestIf(ctx, img, m, now); err != nil {
		t.Fatalf("DeleteManifestIf of a legacy manifest: %v", err)
	}
	items, err = s.ListImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Tags)+len(items.Manifests)+len(items.Links) != 0 {
		t.Fatalf("after the deletes ListImage = %+v, want nothing (the legacy tag goes with its manifest)", items)
	}
	cat, err := s.ListImages(ctx, "", 0)
	if err != nil || len(cat.Items) != 0 {
		t.Fatalf("catalog after deleting the last manifest = %v, %v; want empty", cat.Items, err)
	}
}
