"""The pure decision core: values, rules and `decide`. No I/O, no framework, no clock reads.

Everything here takes the current time as an argument, so the same code runs on the wall
clock in production and in virtual time in the simulator and the tests.
"""
