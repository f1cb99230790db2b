package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// testObjectLister: ListObjects pages through exactly the objects under a
// prefix, in key order, with sizes and modification times; DeleteObjects
// removes exactly the keys given (missing ones are fine).
func testObjectLister(t *testing.T, s storage.Blobs) {
	ol := implements[storage.ObjectLister](t, s, "every Blobs store of this module must")
	ctx := context.Background()
	before := time.Now().Add(-time.Minute)
	var want []string
	sizes := map[string]int64{}
	for i := range 7 {
		body := randomBytes(t, 10+i)
		key, err := s.PutSmall(ctx, digest.FromBytes(body), body)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
		sizes[key] = int64(len(body))
	}
	// Another prefix, which must not be listed under blobs/sha256/.
	mbody := randomBytes(t, 33)
	mkey, err := s.PutManifestBody(ctx, digest.FromBytes(mbody), mbody)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	var got []string
	after := ""
	pages := 0
	for {
		objs, more, err := ol.ListObjects(ctx, "blobs/sha256/", after, 3)
		if err != nil {
			t.Fatalf("ListObjects after %q: %v", after, err)
		}
		pages++
		if len(objs) > 3 {
			t.Fatalf("ListObjects n=3 returned %d objects", len(objs))
		}
		for _, o := range objs {
			got = append(got, o.Key)
			if o.Size != sizes[o.Key] {
				t.Errorf("object %s: size %d, want %d", o.Key, o.Size, sizes[o.Key])
			}
			if o.Modified.Before(before) || o.Modified.After(time.Now().Add(time.Minute)) {
				t.Errorf("object %s: modified %v, want about now", o.Key, o.Modified)
			}
		}
		if !more {
			break
		}
		if len(objs) == 0 {
			t.Fatal("ListObjects: more with an empty page")
		}
		after = objs[len(objs)-1].Key
		if pages > 10 {
			t.Fatal("ListObjects does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q\nwant %q", got, want)
	}
	if pages < 3 {
		t.Errorf("7 objects in pages of 3 took %d pages", pages)
	}
	if objs, _, err := ol.ListObjects(ctx, "manifests/", "", 0); err != nil || len(objs) != 1 || objs[0].Key != mkey {
		t.Errorf("ListObjects(manifests/) = %v, %v; want only %s", objs, err, mkey)
	}
	// Delete three of them and a key that does not exist.
	del := []string{want[0], want[3], want[6], "blobs/sha256/00/missing"}
	failed, err := ol.DeleteObjects(ctx, del)
	if err != nil || len(failed) != 0 {
		t.Fatalf("DeleteObjects = %v, %v", failed, err)
	}
	objs, _, err := ol.ListObjects(ctx, "blobs/sha256/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, o := range objs {
		left = append(left, o.Key)
	}
	rest := []string{want[1], want[2], want[4], want[5]}
	if !slices.Equal(left, rest) {
		t.Errorf("after DeleteObjects: %q, want %q", left, rest)
	}
	// WriteObject/ReadObject: the purge's state, outside the listed prefixes.
	state := randomBytes(t, 70000)
	if err := ol.WriteObject(ctx, storage.PurgePrefix+"state-test", state); err != nil {
		t.Fatalf("WriteObject: %v", err)
	}
	if got, err := ol.ReadObject(ctx, storage.PurgePrefix+"state-test"); err != nil || !bytes.Equal(got, state) {
		t.Errorf("ReadObject = %d bytes, %v; want the %d bytes written", len(got), err, len(state))
	}
	if _, err := ol.ReadObject(ctx, storage.PurgePrefix+"missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReadObject of a missing key: %v, want ErrNotFound", err)
	}
	if objs, _, err := ol.ListObjects(ctx, "blobs/", "", 0); err != nil || len(objs) != len(rest) {
		t.Errorf("ListObjects(blobs/) after WriteObject(purge/...) = %d objects, %v; want %d", len(objs), err, len(rest))
	}
	for _, k := range rest {
		if ok, err := s.BlobExists(ctx, k); err != nil || !ok {
			t.Errorf("BlobExists(%s) after deleting others = %v, %v", k, ok, err)
		}
	}
}
