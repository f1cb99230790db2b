package dynamo_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/storagetest"
)

var tables atomic.Int64

// TEMPORARY dev helper until harness.TestDynamo lands.
func testDynamo(t *testing.T) (*dynamodb.Client, string) {
	ep := os.Getenv("DEV_DYNAMO")
	if ep == "" {
		t.Skip("DEV_DYNAMO not set")
	}
	db := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(ep),
		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", ""),
	})
	name := fmt.Sprintf("t%d-%d", os.Getpid(), tables.Add(1))
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 50e6; o.MaxDelay = 200e6 })
	if err := w.Wait(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 30e9); err != nil {
		t.Fatal(err)
	}
	return db, name
}

func TestMetadata(t *testing.T) {
	storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata {
		db, table := testDynamo(t)
		return dynamo.New(db, table)
	})
}
