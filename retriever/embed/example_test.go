package embed_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/ragfence/ragfence/retriever/embed"
	"github.com/ragfence/ragfence/retriever/embed/embedtest"
)

// Embed query text with a fake embeddings server, then see how a refused
// input and an upstream failure are reported.
func Example() {
	fake := embedtest.New(4)
	defer fake.Close()

	c, err := embed.New(embed.Config{URL: fake.URL, Model: fake.Model, APIKey: fake.Key})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	vec, err := c.Embed(ctx, "refund policy for enterprise customers")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(vec), slices.Equal(vec, fake.Vector("refund policy for enterprise customers")))

	_, err = c.Embed(ctx, "   ")
	fmt.Println(embed.CodeOf(err), embed.IsClientError(err), err)

	fake.Fail(500, 1)
	_, err = c.Embed(ctx, "refund policy")
	fmt.Println(embed.CodeOf(err), embed.IsClientError(err), err)
	// Output:
	// 4 true
	// empty_input true query text is empty
	// upstream_error false embedding service returned HTTP 500: fake failure (HTTP 500)
}
