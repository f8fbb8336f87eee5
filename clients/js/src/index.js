// @pushgate/client: pushgate's client for mini-programs (wx, my, tt, uni),
// browsers and Node. See README.md.

export { createClient } from './client.js';
export { detect as detectPlatform } from './platform.js';
