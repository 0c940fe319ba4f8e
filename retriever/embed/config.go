package embed

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMaxInputBytes = 8192
)

// Config says which embedding service to call and how.
type Config struct {
	// URL is the service's base URL, e.g. http://localhost:11434 or
	// https://api.example.com. The client appends /v1/embeddings, or only
	// /embeddings when URL already ends with /v1; a URL that already ends
	// with /embeddings is used as is (give the full URL for services that
	// serve elsewhere). A query string is kept. Scheme http or https.
	URL string
	// Model is sent as "model" in every request. Required.
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer APIKey".
	// Surrounding white space (a trailing newline from a secrets file) is
	// trimmed.
	APIKey string
	// Dimensions, when positive, is sent as "dimensions" (for models that
	// can shorten their vectors) and every vector returned must have exactly
	// this length. 0 sends nothing and accepts any non-empty vector.
	Dimensions int
	// Timeout bounds one Embed call, its retry included. Default
	// DefaultTimeout.
	Timeout time.Duration
	// MaxInputBytes is the longest text, in bytes, that Embed sends; longer
	// text is refused with CodeInputTooLong. Default DefaultMaxInputBytes.
	MaxInputBytes int
	// Client makes the HTTP requests. Default a new http.Client on
	// http.DefaultTransport. Its own Timeout, if any, also applies.
	Client *http.Client
}

// Client calls one embeddings endpoint. It is safe for concurrent use.
type Client struct {
	endpoint string
	model    string
	apiKey   string
	dims     int
	timeout  time.Duration
	maxInput int
	hc       *http.Client
}

// New validates cfg and returns a Client. It makes no request: a service
// that is down is found out by the first Embed.
func New(cfg Config) (*Client, error) {
	endpoint, err := endpointURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("embed: Model is required")
	}
	key := strings.TrimSpace(cfg.APIKey)
	if strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// net/http would refuse the header at every request; say so now,
		// without quoting the key.
		return nil, errors.New("embed: APIKey contains white space or control characters")
	}
	if cfg.Dimensions < 0 {
		return nil, fmt.Errorf("embed: Dimensions is %d; want 0 or more", cfg.Dimensions)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("embed: Timeout is %s; want 0 (default) or more", cfg.Timeout)
	}
	if cfg.MaxInputBytes < 0 {
		return nil, fmt.Errorf("embed: MaxInputBytes is %d; want 0 (default) or more", cfg.MaxInputBytes)
	}
	c := &Client{
		endpoint: endpoint,
		model:    cfg.Model,
		apiKey:   key,
		dims:     cfg.Dimensions,
		timeout:  cfg.Timeout,
		maxInput: cfg.MaxInputBytes,
		hc:       cfg.Client,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxInput == 0 {
		c.maxInput = DefaultMaxInputBytes
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	return c, nil
}

// endpointURL joins base and the embeddings path. Errors do not quote the
// URL: it may carry credentials.
func endpointURL(base string) (string, error) {
	if strings.TrimSpace(base) == "" {
		return "", errors.New("embed: URL is required")
	}
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return "", errors.New("embed: URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("embed: URL scheme must be http or https")
	}
	if u.Host == "" {
		return "", errors.New("embed: URL has no host")
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/embeddings"):
	case strings.HasSuffix(p, "/v1"):
		p += "/embeddings"
	default:
		p += "/v1/embeddings"
	}
	u.Path, u.RawPath, u.Fragment, u.RawFragment = p, "", "", ""
	return u.String(), nil
}
