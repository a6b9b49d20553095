/**
 * Loaded by mocha before any spec (see .mocharc.json). Integration specs need a real
 * nats-server; without one the run fails at once with install instructions instead of
 * skipping anything.
 */
import { findNatsServer, INSTALL_HINT } from './nats-server.js';

if (!findNatsServer()) {
  console.error(`\n${INSTALL_HINT}\n`);
  process.exit(1);
}
