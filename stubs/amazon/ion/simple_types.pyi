from typing import Any

from amazon.ion.core import IonType

class IonPySymbol:
    text: str | None
    @classmethod
    def from_value(cls, ion_type: IonType, value: Any, annotations: tuple[Any, ...] = ...) -> IonPySymbol: ...
