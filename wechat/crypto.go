package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
)

// signature is WeChat's message push signature: the hex SHA-1 of its
// parts sorted and concatenated. The URL check and plaintext pushes sign
// (token, timestamp, nonce); safe mode's msg_signature adds the Encrypt
// field.
func signature(parts ...string) string {
	p := append([]string(nil), parts...)
	sort.Strings(p)
	sum := sha1.Sum([]byte(strings.Join(p, "")))
	return hex.EncodeToString(sum[:])
}

// sameSignature compares a received signature in constant time (case
// insensitive: it is hex).
func sameSignature(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(got)), []byte(want)) == 1
}

// blockPad is the PKCS#7 block size of WeChat's message encryption (32,
// not AES's 16).
const blockPad = 32

var (
	errCipher = errors.New("not a valid encrypted message")
	errAppID  = errors.New("the encrypted message is for another app")
)

// decrypt opens a safe-mode Encrypt field: base64 of AES-256-CBC (key =
// the decoded EncodingAESKey, IV = its first 16 bytes) over
// random(16) | msg_len(4, big-endian) | msg | appid, PKCS#7-padded to 32
// bytes. It returns msg after checking that appid is the app's.
func decrypt(key []byte, encrypted, appID string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errCipher
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errCipher
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, key[:aes.BlockSize]).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > blockPad || pad > len(pt) {
		return nil, errCipher
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, errCipher
		}
	}
	pt = pt[:len(pt)-pad]
	if len(pt) < 20 {
		return nil, errCipher
	}
	n := binary.BigEndian.Uint32(pt[16:20])
	if uint64(n) > uint64(len(pt)-20) {
		return nil, errCipher
	}
	msg, id := pt[20:20+n], pt[20+n:]
	if subtle.ConstantTimeCompare(id, []byte(appID)) != 1 {
		return nil, errAppID
	}
	return msg, nil
}
