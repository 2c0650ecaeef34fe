"""Pages of a list, numbered as the schema says: `page` is an integer, nothing else."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

_PAGE_NUMBER = re.compile(r"-?[0-9]+")


class StrictPageNumberPagination(PageNumberPagination):
    """DRF's pagination, but `?page=` and `?page=last` are refused (400) rather than read as the first or last page:
    the schema declares an integer. A number before the first page or past the last is still 404, as DRF answers."""

    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        number = request.query_params.get(self.page_query_param)
        if number is None:
            return 1
        if not _PAGE_NUMBER.fullmatch(number):
            raise ValidationError({self.page_query_param: ["Must be an integer."]})
        return number
