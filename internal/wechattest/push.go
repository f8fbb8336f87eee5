package wechattest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Subscribe-message events.
const (
	EventPopup  = "subscribe_msg_popup_event"
	EventChange = "subscribe_msg_change_event"
	EventSent   = "subscribe_msg_sent_event"
)

// Item is one entry of an event's List.
type Item struct {
	TemplateID string
	// Status is SubscribeStatusString ("accept", "reject") of popup and
	// change events.
	Status string
	// MsgID, ErrorCode and ErrorStatus are those of a sent event
	// (ErrorCode 0, ErrorStatus "success").
	MsgID       string
	ErrorCode   int
	ErrorStatus string
}

// Event is a pushed event.
type Event struct {
	Name   string // subscribe_msg_popup_event, ...
	OpenID string // FromUserName
	Items  []Item
	// Time is CreateTime (now when zero).
	Time time.Time
}

// Pusher posts events to a message push URL as WeChat does: plaintext
// (signature over token, timestamp and nonce) or safe mode (the body
// encrypted with the EncodingAESKey, msg_signature over the token,
// timestamp, nonce and ciphertext), XML or JSON.
type Pusher struct {
	// URL is the push URL (…/wechat/events/<appId>).
	URL    string
	AppID  string
	Token  string
	AESKey string // EncodingAESKey (43 characters); "" for plaintext mode
	// JSON sends JSON bodies instead of XML.
	JSON bool
	// ListObject writes a JSON List of one item as an object rather than an
	// array (WeChat does both).
	ListObject bool
	// OriginalID is ToUserName (the mini-program's gh_ id).
	OriginalID string
	Client     *http.Client
	// Now gives the timestamp (time.Now when nil).
	Now func() time.Time
}

// Tamper alters a push to test its refusal.
type Tamper struct {
	// BadSignature signs with a wrong token (both signatures).
	BadSignature bool
	// Timestamp replaces the push's time.
	Timestamp time.Time
	// Nonce replaces the random nonce (to replay one).
	Nonce string
	// AppID replaces the appid encrypted into a safe-mode body.
	AppID string
	// Ciphertext corrupts the encrypted body (after signing it).
	Ciphertext bool
}

// Result is the push URL's answer.
type Result struct {
	Status int
	Body   string
	// Nonce is the nonce the push used.
	Nonce string
}

func (p *Pusher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pusher) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return http.DefaultClient
}

// Sign is WeChat's signature: hex SHA-1 of the parts sorted and joined.
func Sign(parts ...string) string {
	s := append([]string(nil), parts...)
	sort.Strings(s)
	sum := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(sum[:])
}

func nonce() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9_000_000_000))
	return strconv.FormatInt(n.Int64()+1_000_000_000, 10)
}

// CheckURL is WeChat's URL check: GET with signature, timestamp, nonce and
// echostr.
func (p *Pusher) CheckURL(ctx context.Context, echostr string, t Tamper) (*Result, error) {
	ts, n := p.stamp(t)
	token := p.Token
	if t.BadSignature {
		token += "x"
	}
	q := url.Values{"signature": {Sign(token, ts, n)}, "timestamp": {ts}, "nonce": {n}, "echostr": {echostr}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return p.do(req, n)
}

func (p *Pusher) stamp(t Tamper) (ts, n string) {
	at := p.now()
	if !t.Timestamp.IsZero() {
		at = t.Timestamp
	}
	n = t.Nonce
	if n == "" {
		n = nonce()
	}
	return strconv.FormatInt(at.Unix(), 10), n
}

// Push posts ev.
func (p *Pusher) Push(ctx context.Context, ev Event, t Tamper) (*Result, error) {
	plain := p.encode(ev)
	ts, n := p.stamp(t)
	token := p.Token
	if t.BadSignature {
		token += "x"
	}
	q := url.Values{"signature": {Sign(token, ts, n)}, "timestamp": {ts}, "nonce": {n}, "openid": {ev.OpenID}}
	body := plain
	if p.AESKey != "" {
		appID := p.AppID
		if t.AppID != "" {
			appID = t.AppID
		}
		enc, err := Encrypt(p.AESKey, appID, plain)
		if err != nil {
			return nil, err
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", Sign(token, ts, n, enc))
		if t.Ciphertext {
			enc = "AAAA" + enc[4:]
		}
		if p.JSON {
			body, _ = json.Marshal(map[string]string{"ToUserName": p.originalID(), "Encrypt": enc})
		} else {
			body = []byte("<xml><ToUserName><![CDATA[" + p.originalID() + "]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>")
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if p.JSON {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "text/xml")
	}
	return p.do(req, n)
}

func (p *Pusher) do(req *http.Request, n string) (*Result, error) {
	resp, err := p.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Result{Status: resp.StatusCode, Body: string(b), Nonce: n}, nil
}

func (p *Pusher) originalID() string {
	if p.OriginalID != "" {
		return p.OriginalID
	}
	return "gh_123456789abc"
}

// listElement is the XML element holding an event's List entries.
func listElement(name string) string {
	switch name {
	case EventPopup:
		return "SubscribeMsgPopupEvent"
	case EventChange:
		return "SubscribeMsgChangeEvent"
	case EventSent:
		return "SubscribeMsgSentEvent"
	}
	return ""
}

// encode writes the event as WeChat's XML or JSON.
func (p *Pusher) encode(ev Event) []byte {
	at := ev.Time
	if at.IsZero() {
		at = p.now()
	}
	if p.JSON {
		var items []map[string]any
		for _, it := range ev.Items {
			m := map[string]any{"TemplateId": it.TemplateID}
			if ev.Name == EventSent {
				m["MsgID"] = it.MsgID
				m["ErrorCode"] = strconv.Itoa(it.ErrorCode)
				m["ErrorStatus"] = it.ErrorStatus
			} else {
				m["SubscribeStatusString"] = it.Status
				if ev.Name == EventPopup {
					m["PopupScene"] = "0"
				}
			}
			items = append(items, m)
		}
		doc := map[string]any{"ToUserName": p.originalID(), "FromUserName": ev.OpenID,
			"CreateTime": at.Unix(), "MsgType": "event", "Event": ev.Name}
		if len(items) == 1 && p.ListObject {
			doc["List"] = items[0]
		} else {
			doc["List"] = items
		}
		b, _ := json.Marshal(doc)
		return b
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[%s]]></Event>",
		p.originalID(), ev.OpenID, at.Unix(), ev.Name)
	if el := listElement(ev.Name); el != "" {
		b.WriteString("<" + el + ">")
		for _, it := range ev.Items {
			fmt.Fprintf(&b, "<List><TemplateId><![CDATA[%s]]></TemplateId>", it.TemplateID)
			if ev.Name == EventSent {
				fmt.Fprintf(&b, "<MsgID>%s</MsgID><ErrorCode>%d</ErrorCode><ErrorStatus><![CDATA[%s]]></ErrorStatus>",
					it.MsgID, it.ErrorCode, it.ErrorStatus)
			} else {
				fmt.Fprintf(&b, "<SubscribeStatusString><![CDATA[%s]]></SubscribeStatusString>", it.Status)
				if ev.Name == EventPopup {
					b.WriteString("<PopupScene>0</PopupScene>")
				}
			}
			b.WriteString("</List>")
		}
		b.WriteString("</" + el + ">")
	}
	b.WriteString("</xml>")
	return []byte(b.String())
}

// Encrypt is safe mode's encryption: base64(AES-256-CBC(random(16) |
// len(msg) as 4 bytes big-endian | msg | appid, PKCS#7 padded to a
// multiple of 32)), the key being base64(EncodingAESKey + "=") and the IV
// its first 16 bytes.
func Encrypt(encodingAESKey, appID string, msg []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return "", fmt.Errorf("wechattest: bad EncodingAESKey")
	}
	var buf bytes.Buffer
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	buf.Write(random)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(msg)))
	buf.Write(n[:])
	buf.Write(msg)
	buf.WriteString(appID)
	pad := 32 - buf.Len()%32
	buf.Write(bytes.Repeat([]byte{byte(pad)}, pad))
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	ct := make([]byte, buf.Len())
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(ct, buf.Bytes())
	return base64.StdEncoding.EncodeToString(ct), nil
}
