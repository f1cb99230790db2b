package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/awslabs/goformation/v7"
	cfndynamodb "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
)

// TableResource is the logical id of the DynamoDB table in template.yaml.
const TableResource = "RegistryTable"

// credsProvider returns the emulators' static credentials.
func credsProvider() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// DynamoClient returns a DynamoDB client for an emulator at endpoint, with
// the harness credentials and region and nothing read from the environment.
func DynamoClient(ctx context.Context, endpoint string) (*dynamodb.Client, error) {
	if endpoint == "" {
		return nil, errors.New("dynamo client: empty endpoint")
	}
	return dynamodb.New(dynamodb.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       Region,
		Credentials:  credsProvider(),
	}), nil
}

// S3Client returns a path-style S3 client for an emulator at endpoint, with
// the harness credentials and checksums only when required (as emulators
// expect). Storage code builds its own with s3store.NewClient; this one is
// for the harness and its tests.
func S3Client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:               aws.String(endpoint),
		Region:                     Region,
		Credentials:                credsProvider(),
		UsePathStyle:               true,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// TableDefinition reads template.yaml (at the repository root) with
// goformation and returns the AWS::DynamoDB::Table named TableResource:
// the one source of truth for the table's keys.
//
// The template is parsed once per process, under a lock: goformation keeps a
// package-level registry that is not safe for concurrent use. Callers must
// not modify the returned table.
func TableDefinition() (*cfndynamodb.Table, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, "template.yaml")
	tableDefs.mu.Lock()
	defer tableDefs.mu.Unlock()
	if t, ok := tableDefs.byPath[path]; ok {
		return t, nil
	}
	tmpl, err := goformation.Open(path)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	t, err := tmpl.GetDynamoDBTableWithName(TableResource)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", TableResource, path, err)
	}
	if tableDefs.byPath == nil {
		tableDefs.byPath = map[string]*cfndynamodb.Table{}
	}
	tableDefs.byPath[path] = t
	return t, nil
}

// tableDefs caches TableDefinition per template path.
var tableDefs struct {
	mu     sync.Mutex
	byPath map[string]*cfndynamodb.Table
}

// CreateTableInput translates the template's table into a CreateTable call
// for the table named name (billing, attributes, keys, secondary indexes).
func CreateTableInput(t *cfndynamodb.Table, name string) (*dynamodb.CreateTableInput, error) {
	if len(t.KeySchema) == 0 {
		return nil, errors.New("table definition has no KeySchema")
	}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		KeySchema:   keySchema(t.KeySchema),
	}
	if t.BillingMode != nil && *t.BillingMode == string(types.BillingModeProvisioned) {
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(5)}
	}
	for _, a := range t.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
			AttributeName: aws.String(a.AttributeName),
			AttributeType: types.ScalarAttributeType(a.AttributeType),
		})
	}
	for _, g := range t.GlobalSecondaryIndexes {
		gsi := types.GlobalSecondaryIndex{
			IndexName:  aws.String(g.IndexName),
			KeySchema:  keySchema(g.KeySchema),
			Projection: projection(g.Projection),
		}
		if in.BillingMode == types.BillingModeProvisioned {
			gsi.ProvisionedThroughput = in.ProvisionedThroughput
		}
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, gsi)
	}
	for _, l := range t.LocalSecondaryIndexes {
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, types.LocalSecondaryIndex{
			IndexName:  aws.String(l.IndexName),
			KeySchema:  keySchema(l.KeySchema),
			Projection: projection(l.Projection),
		})
	}
	return in, nil
}

func keySchema(ks []cfndynamodb.Table_KeySchema) []types.KeySchemaElement {
	out := make([]types.KeySchemaElement, 0, len(ks))
	for _, k := range ks {
		out = append(out, types.KeySchemaElement{AttributeName: aws.String(k.AttributeName), KeyType: types.KeyType(k.KeyType)})
	}
	// HASH before RANGE, as the API requires.
	sort.SliceStable(out, func(i, j int) bool { return out[i].KeyType == types.KeyTypeHash && out[j].KeyType != types.KeyTypeHash })
	return out
}

func projection(cp *cfndynamodb.Table_Projection) *types.Projection {
	p := &types.Projection{ProjectionType: types.ProjectionTypeAll}
	if cp == nil {
		return p
	}
	if cp.ProjectionType != nil {
		p.ProjectionType = types.ProjectionType(*cp.ProjectionType)
	}
	if len(cp.NonKeyAttributes) > 0 {
		p.NonKeyAttributes = cp.NonKeyAttributes
	}
	return p
}

// CreateTable creates table as template.yaml's RegistryTable defines it and
// waits until it is ACTIVE. An existing table is left as it is.
func CreateTable(ctx context.Context, db *dynamodb.Client, table string) error {
	def, err := TableDefinition()
	if err != nil {
		return fmt.Errorf("create table %s: %w", table, err)
	}
	in, err := CreateTableInput(def, table)
	if err != nil {
		return fmt.Errorf("create table %s: %w", table, err)
	}
	if _, err := db.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if !errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: %w", table, err)
		}
	}
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		return fmt.Errorf("create table %s: wait active: %w", table, err)
	}
	return nil
}

// CreateBucket creates bucket; one that exists already is not an error.
func CreateBucket(ctx context.Context, s3c *s3.Client, bucket string) error {
	_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		var exists *s3types.BucketAlreadyExists
		if !errors.As(err, &owned) && !errors.As(err, &exists) {
			return fmt.Errorf("create bucket %s: %w", bucket, err)
		}
	}
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("create bucket %s: head: %w", bucket, err)
	}
	return nil
}
