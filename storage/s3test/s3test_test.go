package s3test_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/goldproxy/goldproxy/storage/s3test"
)

// TestServerLifecycle: the server takes the root keys only, keeps objects under
// Root/<bucket>, and is stopped when the test ends.
func TestServerLifecycle(t *testing.T) {
	var endpoint string
	t.Run("running", func(t *testing.T) {
		srv := s3test.Start(t)
		endpoint = srv.Endpoint
		bucket := srv.NewBucket(t)
		c := srv.Client(t)
		if _, err := c.PutObject(&s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(srv.Root, bucket, "a", "b")); err != nil || string(b) != "x" {
			t.Fatalf("object on disk: %q %v", b, err)
		}
		wrong := &s3test.Server{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "wrong"}
		if _, err := wrong.Client(t).PutObject(&s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("c"), Body: strings.NewReader("x")}); err == nil {
			t.Fatal("a wrong secret key was accepted")
		}
	})
	if endpoint == "" {
		t.Skip("no server started")
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get(endpoint + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("the server still answers after the test")
	}
}
