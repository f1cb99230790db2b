package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// tagItem points a tag at a digest (pk IMG#<repo>/<name>, sk T#<tag>). At
// is when it was last written (PutTag, PutTagCheck), epoch ms; 0 on items
// written before it was recorded.
type tagItem struct {
	key
	Digest string `dynamodbav:"digest"`
	At     int64  `dynamodbav:"at,omitempty"`
}

func tagKey(img storage.Image, tag string) key {
	return key{PK: imagePK(img), SK: prefixTag + tag}
}

// ResolveTag returns the digest tag points at in img, or storage.ErrNotFound.
func (s *Store) ResolveTag(ctx context.Context, img storage.Image, tag string) (digest.Digest, error) {
	var it tagItem
	if err := s.getItem(ctx, tagKey(img, tag), &it); err != nil {
		return "", fmt.Errorf("resolve tag %s:%s: %w", img, tag, err)
	}
	return digest.Digest(it.Digest), nil
}

// PutTag points tag at d. Under storage.TagCreateOnly the write is one
// conditional PutItem (the tag is absent or already points at d), so of
// concurrent writers of different digests exactly one wins; the others get
// storage.ErrConflict.
func (s *Store) PutTag(ctx context.Context, img storage.Image, tag string, d digest.Digest, rule storage.TagRule) error {
	var cond *expression.ConditionBuilder
	switch rule {
	case storage.TagOverwrite:
	case storage.TagCreateOnly:
		c := expression.AttributeNotExists(expression.Name(attrPK)).
			Or(expression.Name("digest").Equal(expression.Value(d.String())))
		cond = &c
	default:
		return fmt.Errorf("put tag %s:%s: unknown rule %d", img, tag, rule)
	}
	if err := s.putItem(ctx, tagItem{key: tagKey(img, tag), Digest: d.String(), At: toMillis(s.now())}, cond); err != nil {
		return fmt.Errorf("put tag %s:%s: %w", img, tag, err)
	}
	return nil
}

// DeleteTag removes tag from img, or returns storage.ErrNotFound.
func (s *Store) DeleteTag(ctx context.Context, img storage.Image, tag string) error {
	err := s.deleteItem(ctx, tagKey(img, tag), mustExist())
	if errors.Is(err, storage.ErrConflict) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete tag %s:%s: %w", img, tag, err)
	}
	return nil
}

// ListTags returns up to n tags of img (n <= 0: all) strictly after last, in
// lexical (UTF-8 byte) order: one Query in key order, starting after T#<last>.
func (s *Store) ListTags(ctx context.Context, img storage.Image, last string, n int) (storage.Page, error) {
	after := ""
	if last != "" {
		after = prefixTag + last
	}
	sks, err := s.query(ctx, imagePK(img), prefixTag, after, nil, limitFor(n))
	if err != nil {
		return storage.Page{}, fmt.Errorf("list tags of %s after %q: %w", img, last, err)
	}
	for i, sk := range sks {
		sks[i] = strings.TrimPrefix(sk, prefixTag)
	}
	return page(sks, n), nil
}
