package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// changesChannel is the one LISTEN/NOTIFY channel replicas tell each other on.
const changesChannel = "goldproxy_changes"

// change is one notification's payload: what changed, and which Store said so.
type change struct {
	Topic   string `json:"t"`
	Payload string `json:"p,omitempty"`
	From    string `json:"f"`
}

// Notify tells every other Store listening on the database that topic changed (the
// payload names what, e.g. a digest). It is delivered once the statement commits; a
// replica not listening at that moment misses it, so listeners must also look for
// themselves when they (re)connect.
func (s *Store) Notify(ctx context.Context, topic, payload string) error {
	b, err := json.Marshal(change{Topic: topic, Payload: payload, From: s.owner})
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, changesChannel, string(b)); err != nil {
		return fmt.Errorf("postgres: notify: %w", err)
	}
	return nil
}

// Listen calls fn for every change another Store notifies, until ctx ends, on one
// connection of its own, made again when it is lost. Each time it starts listening it
// first calls fn with topic "" and payload "connected" or, on a new connection,
// "reconnected": changes may have been missed, look again. fn runs on Listen's
// goroutine.
func (s *Store) Listen(ctx context.Context, fn func(topic, payload string)) error {
	wait := 100 * time.Millisecond
	for first := true; ; first = false {
		err := s.listen(ctx, fn, first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if err == nil {
			wait = 100 * time.Millisecond
		} else {
			wait = min(2*wait, 5*time.Second)
		}
	}
}

func (s *Store) listen(ctx context.Context, fn func(topic, payload string), first bool) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: listen: %w", err)
	}
	// The connection carries the LISTEN: it never goes back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+changesChannel); err != nil {
		return fmt.Errorf("postgres: listen: %w", err)
	}
	if first {
		fn("", "connected")
	} else {
		fn("", "reconnected")
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("postgres: listen: %w", err)
		}
		var c change
		if json.Unmarshal([]byte(n.Payload), &c) != nil || c.From == s.owner {
			continue
		}
		fn(c.Topic, c.Payload)
	}
}

// PutValue stores value under (namespace, key), replacing what was there.
func (s *Store) PutValue(ctx context.Context, namespace, key string, value []byte) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO shared_values (namespace, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value`, namespace, key, nonNil(value)); err != nil {
		return fmt.Errorf("postgres: put value: %w", err)
	}
	return nil
}

// Value returns what is stored under (namespace, key), or storage.ErrNotFound.
func (s *Store) Value(ctx context.Context, namespace, key string) ([]byte, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM shared_values WHERE namespace = $1 AND key = $2`, namespace, key).Scan(&b)
	return b, notFound(err)
}

// DeleteValues removes the keys of namespace (absent ones are no error).
func (s *Store) DeleteValues(ctx context.Context, namespace string, keys ...string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM shared_values WHERE namespace = $1 AND key = ANY($2)`, namespace, keys); err != nil {
		return fmt.Errorf("postgres: delete values: %w", err)
	}
	return nil
}

// ClearValues removes every key of namespace.
func (s *Store) ClearValues(ctx context.Context, namespace string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM shared_values WHERE namespace = $1`, namespace); err != nil {
		return fmt.Errorf("postgres: clear values: %w", err)
	}
	return nil
}
