package limit

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBodiesTakeTurns(t *testing.T) {
	b := NewBodies(100, 80)
	req := func(n int64) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "http://x", strings.NewReader(""))
		r.ContentLength = n
		return r
	}
	rel1, err := b.Acquire(context.Background(), req(70))
	if err != nil {
		t.Fatal(err)
	}
	// Small ones fit beside it.
	rel2, err := b.Acquire(context.Background(), req(20))
	if err != nil {
		t.Fatal(err)
	}
	// Unknown length counts as the maximum: it waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(ctx, req(-1)); err == nil {
		t.Fatal("a body of unknown size was let in over the budget")
	}
	rel1()
	rel2()
	rel3, err := b.Acquire(context.Background(), req(-1))
	if err != nil {
		t.Fatal(err)
	}
	rel3()
}
