// Builds pushgate once for a whole `npm test` run (each test file is a
// process of its own; with PUSHGATE_BIN set none of them builds again).
import { buildServer } from './server.js';

buildServer();
