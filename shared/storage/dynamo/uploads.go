package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/airlock-registry/airlock/shared/storage"
)

// uploadItem is an upload session (pk UPLOAD#<id>, sk UPLOAD). ExpiresAt is in
// epoch seconds (the table's TTL attribute), LeaseUntil in epoch milliseconds.
// While no writer holds the session there is no lease attribute and
// leaseUntil is 0: it is always present, so that "no live lease" is one
// comparison (leaseUntil < now) in every condition, not an OR with
// attribute_not_exists (several times slower to evaluate in dynalite).
type uploadItem struct {
	key
	ID            string       `dynamodbav:"id"`
	Repo          string       `dynamodbav:"repo"`
	Name          string       `dynamodbav:"name"`
	Offset        int64        `dynamodbav:"offset"`
	MultipartID   string       `dynamodbav:"multipartId,omitempty"`
	Parts         []partItem   `dynamodbav:"parts,omitempty"`
	Staged        []stagedItem `dynamodbav:"staged,omitempty"`
	HashAlgorithm string       `dynamodbav:"hashAlg,omitempty"`
	HashState     []byte       `dynamodbav:"hashState,omitempty"`
	Lease         string       `dynamodbav:"lease,omitempty"`
	LeaseUntil    int64        `dynamodbav:"leaseUntil"`
	Created       time.Time    `dynamodbav:"created"`
	ExpiresAt     int64        `dynamodbav:"expiresAt"`
	// Updated is when the store last wrote the session, epoch ms (0 on
	// items written before it was recorded); only ListUploads reads it.
	Updated int64 `dynamodbav:"updated,omitempty"`
}

type partItem struct {
	Number int32  `dynamodbav:"n"`
	ETag   string `dynamodbav:"etag"`
	Size   int64  `dynamodbav:"size"`
}

type stagedItem struct {
	Key  string `dynamodbav:"key"`
	Size int64  `dynamodbav:"size"`
}

func uploadKey(id string) key { return key{PK: uploadPK(id), SK: skUpload} }

func newUploadItem(u storage.Upload) uploadItem {
	it := uploadItem{
		key:           uploadKey(u.ID),
		ID:            u.ID,
		Repo:          u.Image.Repo,
		Name:          u.Image.Name,
		Offset:        u.Offset,
		MultipartID:   u.MultipartID,
		HashAlgorithm: u.HashAlgorithm,
		HashState:     u.HashState,
		Lease:         u.Lease,
		Created:       u.Created.UTC(),
		ExpiresAt:     u.ExpiresAt.Unix(),
	}
	if u.Lease != "" {
		it.LeaseUntil = u.LeaseUntil.UnixMilli()
	}
	for _, p := range u.Parts {
		it.Parts = append(it.Parts, partItem{Number: p.Number, ETag: p.ETag, Size: p.Size})
	}
	for _, st := range u.Staged {
		it.Staged = append(it.Staged, stagedItem{Key: st.Key, Size: st.Size})
	}
	return it
}

func (it uploadItem) upload() storage.Upload {
	u := storage.Upload{
		ID:            it.ID,
		Image:         storage.Image{Repo: it.Repo, Name: it.Name},
		Offset:        it.Offset,
		MultipartID:   it.MultipartID,
		HashAlgorithm: it.HashAlgorithm,
		HashState:     it.HashState,
		Lease:         it.Lease,
		Created:       it.Created,
		ExpiresAt:     time.Unix(it.ExpiresAt, 0).UTC(),
	}
	if it.Lease != "" {
		u.LeaseUntil = time.UnixMilli(it.LeaseUntil).UTC()
	}
	for _, p := range it.Parts {
		u.Parts = append(u.Parts, storage.Part{Number: p.Number, ETag: p.ETag, Size: p.Size})
	}
	for _, st := range it.Staged {
		u.Staged = append(u.Staged, storage.Staged{Key: st.Key, Size: st.Size})
	}
	return u
}

// CreateUpload stores a new session without a lease; ExpiresAt is required
// and kept to the second. An existing session with the same ID is
// storage.ErrConflict.
func (s *Store) CreateUpload(ctx context.Context, u storage.Upload) error {
	if u.ID == "" || u.ExpiresAt.IsZero() {
		return fmt.Errorf("create upload %q: ID and ExpiresAt are required", u.ID)
	}
	u.Lease, u.LeaseUntil = "", time.Time{}
	now := s.now()
	it := newUploadItem(u)
	it.Updated = now.UnixMilli()
	// The session and its index entry (upload_index.go) in parallel: one
	// round trip. A lone entry (the session's write failed) is harmless:
	// ListUploads deletes it when it meets it.
	idx := make(chan error, 1)
	go func() { idx <- s.putUploadIndex(ctx, u, now) }()
	err := s.putItem(ctx, it, mustNotExist())
	ierr := <-idx
	if err != nil {
		return fmt.Errorf("create upload %s: %w", u.ID, err)
	}
	if ierr != nil {
		return fmt.Errorf("create upload %s: index entry: %w", u.ID, ierr)
	}
	return nil
}

// GetUpload returns the session (strongly consistent read), or
// storage.ErrNotFound when it does not exist or has expired.
func (s *Store) GetUpload(ctx context.Context, id string) (storage.Upload, error) {
	var it uploadItem
	if err := s.getItem(ctx, uploadKey(id), &it); err != nil {
		return storage.Upload{}, fmt.Errorf("get upload %s: %w", id, err)
	}
	if it.ExpiresAt <= s.now().Unix() {
		return storage.Upload{}, fmt.Errorf("get upload %s: expired: %w", id, storage.ErrNotFound)
	}
	return it.upload(), nil
}

// AcquireUpload takes the lease with one conditional UpdateItem that returns
// the new item: the committed offset must equal offset, no other lease may be
// live and the session must not have expired. When the condition fails, one
// more read tells storage.ErrNotFound from storage.ErrConflict.
func (s *Store) AcquireUpload(ctx context.Context, id string, offset int64, lease string, until time.Time) (storage.Upload, error) {
	if lease == "" {
		return storage.Upload{}, fmt.Errorf("acquire upload %s: empty lease", id)
	}
	if !uploadKey(id).fits() {
		return storage.Upload{}, fmt.Errorf("acquire upload %.64s…: %w", id, storage.ErrNotFound)
	}
	now := s.now()
	update := expression.Set(expression.Name("lease"), expression.Value(lease)).
		Set(expression.Name("leaseUntil"), expression.Value(until.UnixMilli())).
		Set(expression.Name("updated"), expression.Value(now.UnixMilli()))
	cond := writable(offset, now)
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return storage.Upload{}, fmt.Errorf("acquire upload %s: build update: %w", id, err)
	}
	res, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       uploadKey(id).av(),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnValues:              types.ReturnValueAllNew,
	})
	if conditionFailed(err) {
		if _, gerr := s.GetUpload(ctx, id); errors.Is(gerr, storage.ErrNotFound) {
			return storage.Upload{}, fmt.Errorf("acquire upload %s: %w", id, storage.ErrNotFound)
		}
		return storage.Upload{}, fmt.Errorf("acquire upload %s at offset %d: %w", id, offset, storage.ErrConflict)
	}
	if err != nil {
		return storage.Upload{}, fmt.Errorf("acquire upload %s: %w", id, err)
	}
	var it uploadItem
	if err := attributevalue.UnmarshalMap(res.Attributes, &it); err != nil {
		return storage.Upload{}, fmt.Errorf("acquire upload %s: decode: %w", id, err)
	}
	return it.upload(), nil
}

// writable is the condition of a write at offset: the session's committed
// offset is offset, no live lease is held, and it has not expired.
func writable(offset int64, now time.Time) expression.ConditionBuilder {
	return expression.Name("offset").Equal(expression.Value(offset)).
		And(expression.Name("leaseUntil").LessThan(expression.Value(now.UnixMilli()))).
		And(expression.Name(attrExpires).GreaterThan(expression.Value(now.Unix())))
}

// CommitUpload replaces the session with u, lease released, on condition that
// the stored lease is still u.Lease (storage.ErrConflict otherwise, including
// when the session is gone).
func (s *Store) CommitUpload(ctx context.Context, u storage.Upload) error {
	if u.Lease == "" || !uploadKey(u.ID).fits() {
		return fmt.Errorf("commit upload %.64s: no lease held: %w", u.ID, storage.ErrConflict)
	}
	held := expression.Name("lease").Equal(expression.Value(u.Lease))
	lease := u.Lease
	u.Lease, u.LeaseUntil = "", time.Time{}
	it := newUploadItem(u)
	it.Updated = s.now().UnixMilli()
	if err := s.putItem(ctx, it, &held); err != nil {
		return fmt.Errorf("commit upload %s (lease %s): %w", u.ID, lease, err)
	}
	return nil
}

// CommitUploadAt replaces the session with u (no lease) with one conditional
// PutItem: the stored offset must still be offset, no live lease may be held
// and the session must not have expired (storage.ErrConflict otherwise,
// including when the session is gone).
func (s *Store) CommitUploadAt(ctx context.Context, u storage.Upload, offset int64) error {
	if !uploadKey(u.ID).fits() {
		return fmt.Errorf("commit upload %.64s at %d: %w", u.ID, offset, storage.ErrConflict)
	}
	now := s.now()
	cond := writable(offset, now)
	u.Lease, u.LeaseUntil = "", time.Time{}
	it := newUploadItem(u)
	it.Updated = now.UnixMilli()
	if err := s.putItem(ctx, it, &cond); err != nil {
		return fmt.Errorf("commit upload %s at %d: %w", u.ID, offset, err)
	}
	return nil
}

// DeleteUpload removes the session; deleting a missing one is not an error.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	if err := s.deleteItem(ctx, uploadKey(id), nil); err != nil {
		return fmt.Errorf("delete upload %s: %w", id, err)
	}
	return nil
}
