/** Injection token of this instance's name, so what it records says who did it. */
export const INSTANCE_NAME = Symbol('INSTANCE_NAME');
