class svmem:
    total: int

def virtual_memory() -> svmem: ...
