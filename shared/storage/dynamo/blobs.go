package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// blobItem is a global blob record (pk BLOB#<digest>, sk BLOB) or a blob link
// (pk IMG#<repo>/<name>, sk B#<digest>).
// Touched is the touch time (storage.Collector), epoch ms; 0 on items
// written before touch times were recorded.
type blobItem struct {
	key
	Digest  string    `dynamodbav:"digest"`
	Size    int64     `dynamodbav:"size"`
	Key     string    `dynamodbav:"s3key,omitempty"`
	Created time.Time `dynamodbav:"created"`
	Touched int64     `dynamodbav:"touched,omitempty"`
}

// newBlobItem returns the item of b at k touched at now.
func newBlobItem(k key, b storage.Blob, now time.Time) blobItem {
	return blobItem{key: k, Digest: b.Digest.String(), Size: b.Size, Key: b.Key, Created: b.Created.UTC(), Touched: toMillis(now)}
}

func (it blobItem) blob() storage.Blob {
	return storage.Blob{Digest: digest.Digest(it.Digest), Size: it.Size, Key: it.Key, Created: it.Created, Touched: fromMillis(it.Touched)}
}

func blobKey(d digest.Digest) key { return key{PK: blobPK(d.String()), SK: skBlob} }

func linkKey(img storage.Image, d digest.Digest) key {
	return key{PK: imagePK(img), SK: prefixLink + d.String()}
}

// PutBlob creates the global record of b, touched now, with one
// conditional PutItem and returns it. When a record exists already, one
// conditional UpdateItem touches it and returns it (nothing else of it
// changes); when that finds the record gone (a purge deleted it in
// between), the create is tried once more.
func (s *Store) PutBlob(ctx context.Context, b storage.Blob) (storage.Blob, error) {
	now := s.now()
	it := newBlobItem(blobKey(b.Digest), b, now)
	for attempt := 0; ; attempt++ {
		err := s.putItem(ctx, it, mustNotExist())
		if err == nil {
			return it.blob(), nil
		}
		if !errors.Is(err, storage.ErrConflict) {
			return storage.Blob{}, fmt.Errorf("put blob %s: %w", b.Digest, err)
		}
		var won blobItem
		err = s.touch(ctx, blobKey(b.Digest), attrTouched, now, &won)
		if err == nil {
			return won.blob(), nil
		}
		if !errors.Is(err, storage.ErrNotFound) || attempt > 0 {
			return storage.Blob{}, fmt.Errorf("put blob %s: exists, but touching it: %w", b.Digest, err)
		}
	}
}

// GetBlob returns the global record of d, or storage.ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	var it blobItem
	if err := s.getItem(ctx, blobKey(d), &it); err != nil {
		return storage.Blob{}, fmt.Errorf("get blob %s: %w", d, err)
	}
	return it.blob(), nil
}

// LinkBlob touches the global record of b.Digest (one conditional
// UpdateItem; storage.ErrNotFound when there is none, and nothing is
// linked: a link never points at a record being deleted), then writes the
// link, touched now (overwriting an existing link is harmless: the digest
// fixes the content).
func (s *Store) LinkBlob(ctx context.Context, img storage.Image, b storage.Blob) error {
	lk := linkKey(img, b.Digest)
	if !lk.fits() {
		return fmt.Errorf("link blob %.64s… into %.64s…: %w", b.Digest, img, errKeyTooLong)
	}
	now := s.now()
	if !storage.FreshTouch(b, now) {
		if err := s.touch(ctx, blobKey(b.Digest), attrTouched, now, nil); err != nil {
			return fmt.Errorf("link blob %s into %s: blob record: %w", b.Digest, img, err)
		}
	}
	if err := s.putItem(ctx, newBlobItem(lk, b, now), nil); err != nil {
		return fmt.Errorf("link blob %s into %s: %w", b.Digest, img, err)
	}
	return nil
}

// StatBlob returns the link of d in img with one GetItem, or storage.ErrNotFound.
func (s *Store) StatBlob(ctx context.Context, img storage.Image, d digest.Digest) (storage.Blob, error) {
	var it blobItem
	if err := s.getItem(ctx, linkKey(img, d), &it); err != nil {
		return storage.Blob{}, fmt.Errorf("stat blob %s in %s: %w", d, img, err)
	}
	return it.blob(), nil
}

// UnlinkBlob removes the link of d from img, or returns storage.ErrNotFound.
func (s *Store) UnlinkBlob(ctx context.Context, img storage.Image, d digest.Digest) error {
	err := s.deleteItem(ctx, linkKey(img, d), mustExist())
	if errors.Is(err, storage.ErrConflict) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("unlink blob %s from %s: %w", d, img, err)
	}
	return nil
}
