"""placeholder"""
def add_args(p):
    pass
def run(a):
    return 0
