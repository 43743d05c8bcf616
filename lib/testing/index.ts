export { ManualClock } from './manual-clock.js';
export { runLockStoreContract, type ContractHarness, type ContractOptions } from './contract-suite.js';
