package gate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
)

// VerdictChange is the JSON body POSTed to webhooks.
type VerdictChange struct {
	Repository string          `json:"repository"`
	Tag        string          `json:"tag,omitempty"`
	Digest     string          `json:"digest"`
	From       string          `json:"from"`
	To         string          `json:"to"`
	Policy     string          `json:"policy"`
	Reasons    []policy.Reason `json:"reasons,omitempty"`
	DBVersion  string          `json:"dbVersion,omitempty"`
	At         time.Time       `json:"at"`
}

// notifier delivers verdict changes in the background: serving never waits on it.
type notifier struct {
	secret  []byte
	cfg     config.WebhookConfig
	client  *http.Client
	queue   chan VerdictChange
	log     *slog.Logger
	failed  func()
	backoff time.Duration
}

func newNotifier(cfg config.WebhookConfig, secret string, log *slog.Logger, failed func()) *notifier {
	return &notifier{cfg: cfg, secret: []byte(secret), client: &http.Client{Timeout: cfg.Timeout}, queue: make(chan VerdictChange, 1024), log: log, failed: failed, backoff: time.Second}
}

// SignatureHeader carries the HMAC-SHA256 of a webhook body, keyed with the webhook
// secret: "sha256=<hex>". Receivers check it before trusting a body.
const SignatureHeader = "X-Goldproxy-Signature"

// Sign is the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// redact is a webhook URL as it may be logged: without credentials or query, which
// often carry tokens.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// send queues a change; when the queue is full the change is logged and dropped.
func (n *notifier) send(c VerdictChange) {
	if len(n.cfg.URLs) == 0 {
		return
	}
	select {
	case n.queue <- c:
	default:
		n.log.Warn("webhook queue full: verdict change not delivered", "digest", c.Digest, "from", c.From, "to", c.To)
		n.failed()
	}
}

func (n *notifier) run(ctx context.Context) {
	if len(n.cfg.URLs) == 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-n.queue:
			body, _ := json.Marshal(c)
			for _, u := range n.cfg.URLs {
				n.deliver(ctx, u, body)
			}
		}
	}
}

func (n *notifier) deliver(ctx context.Context, url string, body []byte) {
	wait := n.backoff
	for attempt := 0; attempt <= n.cfg.Retries; attempt++ {
		err := n.post(ctx, url, body)
		if err == nil {
			return
		}
		n.log.Warn("webhook delivery failed", "url", redact(url), "attempt", attempt+1, "err", redactErr(err, url))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait *= 2
	}
	n.failed()
}

func (n *notifier) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "goldproxy")
	if len(n.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(n.secret, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// redactErr keeps a URL's secrets out of an error's text (net/http quotes the URL).
func redactErr(err error, raw string) string {
	return strings.ReplaceAll(err.Error(), raw, redact(raw))
}
