/** The bank's actor types by name, as `createNode({ actors })` and `natstate node --actors` take them. */
import { account } from './account.machine.js';

export const actors = { account };
export default actors;
