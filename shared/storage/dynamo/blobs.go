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
type blobItem struct {
	key
	Digest  string    `dynamodbav:"digest"`
	Size    int64     `dynamodbav:"size"`
	Key     string    `dynamodbav:"s3key,omitempty"`
	Created time.Time `dynamodbav:"created"`
}

func newBlobItem(k key, b storage.Blob) blobItem {
	return blobItem{key: k, Digest: b.Digest.String(), Size: b.Size, Key: b.Key, Created: b.Created.UTC()}
}

func (it blobItem) blob() storage.Blob {
	return storage.Blob{Digest: digest.Digest(it.Digest), Size: it.Size, Key: it.Key, Created: it.Created}
}

func blobKey(d digest.Digest) key { return key{PK: blobPK(d.String()), SK: skBlob} }

func linkKey(img storage.Image, d digest.Digest) key {
	return key{PK: imagePK(img), SK: prefixLink + d.String()}
}

// PutBlob creates the global record of b with one conditional PutItem and
// returns it; when a record exists already it is kept as is and returned
// (one more, strongly consistent, read).
func (s *Store) PutBlob(ctx context.Context, b storage.Blob) (storage.Blob, error) {
	err := s.putItem(ctx, newBlobItem(blobKey(b.Digest), b), mustNotExist())
	if errors.Is(err, storage.ErrConflict) {
		won, gerr := s.GetBlob(ctx, b.Digest)
		if gerr != nil {
			return storage.Blob{}, fmt.Errorf("put blob %s: exists, but: %w", b.Digest, gerr)
		}
		return won, nil
	}
	if err != nil {
		return storage.Blob{}, fmt.Errorf("put blob %s: %w", b.Digest, err)
	}
	return b, nil
}

// GetBlob returns the global record of d, or storage.ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	var it blobItem
	if err := s.getItem(ctx, blobKey(d), &it); err != nil {
		return storage.Blob{}, fmt.Errorf("get blob %s: %w", d, err)
	}
	return it.blob(), nil
}

// LinkBlob makes b visible in img (overwriting an existing link is harmless:
// the digest fixes the content).
func (s *Store) LinkBlob(ctx context.Context, img storage.Image, b storage.Blob) error {
	if err := s.putItem(ctx, newBlobItem(linkKey(img, b.Digest), b), nil); err != nil {
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
